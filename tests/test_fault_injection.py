"""Kill `automl search` and `automl run` at many moments (SIGTERM, SIGKILL), resume, check the study.

A moment is a named point of the process's life (:mod:`automl.faults`) reached for the n-th
time, plus a delay: the signal lands in whatever follows (evaluation after an epoch, the
predictions upload and best-trial save after training, ...); or a plain time since the start,
uniform within the lifetime of an uninterrupted run. All are drawn from a seeded RNG.

- By default, one chain per command: a study whose every session is killed at the next moment,
  then resumed to the end (about a minute for both).
- ``AUTOML_FAULT_MOMENTS=40``: forty moments more, each on a fresh study killed once and resumed
  (half named points, half times; an uninterrupted run of each command is timed first).
  ``AUTOML_FAULT_SEED`` draws other moments.

After each kill: every FAILED trial has a stop_reason; after a SIGTERM, no trial of the stopped
process is left RUNNING; a bundle, if there is one, is complete and loads. After each resume, as
well: the study's exact total, nothing RUNNING, the baseline finished, ``best_trial`` holds the
weights of the best complete trial, nothing left in temporary folders.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.config import load_study_file
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SEED = int(os.environ.get("AUTOML_FAULT_SEED", "7"))
MOMENTS = int(os.environ.get("AUTOML_FAULT_MOMENTS", "0"))
SEARCH_POINTS = ("study_opened", "trial_created", "sampled", "measured", "epoch", "trained", "hooks_done", "told",
                 "swap")
FINAL_POINTS = ("retrained", "exported", "quantized", "bundle_written")
# `automl run`: the search's share (18 s) holds its 2 trials even when a kill's restart counts
# as search time; the final retrain gets what is left, a few seconds.
RUN_BUDGET = "20s"
# Retries are not what is tested: several kills may land in the same trial and its retries.
STUDIES = {
    "search": {"budget.n_trials": 3, "budget.trial_epochs": 2, "storage.max_retries": 20},
    "run": {"budget.n_trials": 2, "storage.max_retries": 20, "budget.trial_epochs": 1, "run.search_fraction": 0.9, "run.final_reserve": 5,
            "final.tta.hflip": False, "final.int8.calibration_images": 4, "final.latency_runs": 5,
            "final.latency_threads": 1},
}


@dataclass
class Moment:
    signal: str  # TERM or KILL
    point: str | None = None  # None: `after` seconds from the start
    nth: int = 1
    after: float = 0.0

    def env(self) -> dict:
        if self.point is None:
            return {}
        return {"AUTOML_FAULT_AT": f"{self.point}:{self.nth}", "AUTOML_FAULT_SIGNAL": self.signal,
                "AUTOML_FAULT_DELAY": f"{self.after:.3f}"}

    def __str__(self) -> str:
        at = f"{self.point}#{self.nth}+{self.after:.2f}s" if self.point else f"{self.after:.1f}s"
        return f"SIG{self.signal} at {at}"


def named(rng: random.Random, points: tuple[str, ...], sig: str | None = None, nth: int | None = None) -> Moment:
    # a delay of 0 hits the instant after the point, the rest of the time what follows it
    return Moment(sig or rng.choice(("TERM", "KILL")), rng.choice(points), nth or rng.choice((1, 1, 2)),
                  rng.choice((0.0, rng.uniform(0, 1.5))))


class Scenario:
    """One study and the command (`search` or `run`) that runs it, in its own folder."""

    def __init__(self, kind: str, root: Path, name: str, workers: int = 1):
        self.kind, self.root, self.workers = kind, root, workers
        write_yaml(root / "space.yaml", TINY_SPACE)
        self.path = write_yaml(root / f"{name}.yaml", tiny_study_doc(name, **STUDIES[kind]))
        self.runs_root, self.systmp = root / "runs", root / "systmp"
        self.systmp.mkdir(parents=True, exist_ok=True)
        self.sf = load_study_file(self.path, runs_root=self.runs_root)
        self.sessions = 0
        self.logs: list[Path] = []

    def start(self, moment: Moment | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", "automl", self.kind, str(self.path), "--runs-root", str(self.runs_root)]
        if self.kind == "run":
            args += ["--budget", RUN_BUDGET]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(self.systmp), **(moment.env() if moment else {}))
        self.sessions += 1
        self.logs.append(self.root / f"session{self.sessions}.log")
        # its own process group: a kill reaches the workers too, as Ctrl-C or a stopped service does
        return subprocess.Popen(args, stdout=open(self.logs[-1], "wb"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def log_tail(self) -> str:
        return self.logs[-1].read_text(errors="replace")[-3000:]

    def interrupt(self, moment: Moment) -> bool:
        """Run a session, killed at ``moment``; False if it ended before the moment came."""
        assert moment.point is None or self.workers == 1, "a named point would stop every worker"
        before = self.running()
        proc = self.start(moment)
        if moment.point is None:
            try:
                proc.wait(timeout=moment.after)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, getattr(signal, "SIG" + moment.signal))
        rc = proc.wait(timeout=300)
        if rc == 0:
            return False
        # A SIGTERM before the CLI has set its handler (while importing) ends the process outright;
        # -SIGINT: the CLI's handling ended with a KeyboardInterrupt at exit (it re-sends a signal
        # that a finalizer swallowed, and once in a while twice), after the study was left in order.
        expected = (130, -signal.SIGTERM, -signal.SIGINT) if moment.signal == "TERM" else (-signal.SIGKILL,)
        assert rc in expected, f"{moment}: exit code {rc}\n{self.log_tail()}"
        self.check_after_kill(moment, before)
        return True

    def complete(self) -> float:
        t0 = time.monotonic()
        proc = self.start()
        assert proc.wait(timeout=300) == 0, self.log_tail()
        return time.monotonic() - t0

    def study(self) -> optuna.Study | None:
        from automl.study.storage import open_storage

        url = f"sqlite:///{self.sf.run_dir / 'study.db'}"
        try:
            return optuna.load_study(study_name=self.sf.name, storage=open_storage(url, self.sf.storage))
        except KeyError:  # killed before the study existed
            return None

    def running(self) -> set[int]:
        study = self.study()
        return {t.number for t in study.get_trials(states=(TrialState.RUNNING,))} if study is not None else set()

    def check_after_kill(self, moment: Moment, running_before: set[int]) -> None:
        study = self.study()
        trials = study.get_trials() if study is not None else []
        assert all("stop_reason" in t.user_attrs for t in trials if t.state == TrialState.FAIL), moment
        if moment.signal == "TERM":
            left = self.running() - running_before
            assert not left, f"{moment}: trials {left} of the stopped session are still RUNNING"
        if moment.signal == "KILL" and moment.point in ("exported", "quantized") and not moment.after:
            # the final's work folder (ONNX files, ONNX Runtime's temp files) stays behind, under
            # runs/ and named by its dead owner, for the next run to remove (checked at the end)
            assert list(self.sf.run_dir.glob(".final-work~tmp~*")), moment
            assert not self.system_temp_leftovers(), moment
        self.check_bundle()

    def check_complete(self) -> None:
        study = self.study()
        trials = study.get_trials()
        assert not [t.number for t in trials if t.state == TrialState.RUNNING]
        finished = [t for t in trials if t.state in FINISHED]
        target = self.sf.budget.n_trials
        stopped_by_budget = self.kind == "run" and any("search stopped" in p.read_text(errors="replace")
                                                       for p in self.logs)
        assert len(finished) == target or (stopped_by_budget and 0 < len(finished) < target), \
            [(t.number, t.state.name, t.user_attrs.get("stop_reason")) for t in trials]
        assert all("stop_reason" in t.user_attrs for t in trials if t.state == TrialState.FAIL)
        assert [t for t in finished if t.user_attrs.get("baseline")], "the baseline never finished"
        self.check_best_trial(trials)
        if self.kind == "run":
            assert study.user_attrs["run_state"] == "done"
            assert self.check_bundle(), "no bundle"
        # temporary folders (old names included: .bundle.XXXX, .best_trial.XXXX)
        leftovers = [p for p in self.sf.run_dir.rglob("*") if p.is_dir() and p.name.startswith(".")]
        assert not leftovers, leftovers
        assert not self.system_temp_leftovers()

    def system_temp_leftovers(self) -> list[Path]:
        """The final's temporary folders in the system's temp folder (libraries' caches may stay)."""
        return [p for p in self.systmp.iterdir() if p.name.startswith(("automl-final-", "ort.quant.", "pre.quant."))]

    def check_best_trial(self, trials: list) -> None:
        import json

        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            return
        info = json.loads((self.sf.run_dir / "best_trial" / "trial_config.json").read_text())
        best = max(t.value for t in complete)
        (kept,) = [t for t in trials if t.number == info["trial_number"]]
        assert kept.state == TrialState.COMPLETE and kept.value == info["value"] == best, \
            (info["trial_number"], info["value"], [(t.number, t.value) for t in complete])
        assert info["config"] == kept.user_attrs["config"]

    def check_bundle(self) -> bool:
        from automl import load_bundle
        from automl.bundle.load import read_manifest
        from automl.data.folder import load_dataset

        bundle = self.sf.run_dir / "bundle"
        if not bundle.exists():
            return False
        manifest = read_manifest(bundle)
        files = ["report.json", "report.md", "recipe.yaml", "preprocess.yaml", "model/config.json"]
        files += ["model.onnx"] if manifest.onnx is not None else []
        files += ["model.int8.onnx"] if manifest.int8_file else []
        assert [f for f in files if not (bundle / f).is_file()] == []
        image = load_dataset(self.sf.data_root, tuple(self.sf.data.classes), self.sf.data.ignore_index).val.images[0]
        assert load_bundle(bundle).predict(image).shape == image.shape[:2]
        return True


def _points(kind: str) -> tuple[str, ...]:
    return SEARCH_POINTS + (FINAL_POINTS if kind == "run" else ())


def _chain(kind: str, rng: random.Random) -> list[Moment]:
    """The default chain: for the search, the reported case first (the enqueued baseline left
    RUNNING with no owner), then a SIGTERM and a SIGKILL anywhere; for `automl run`, a SIGTERM in
    the search, then a SIGKILL in the final's export or INT8 (its work folder is left behind)."""
    if kind == "search":
        return [Moment("KILL", "trial_created"), named(rng, SEARCH_POINTS, "TERM", 1),
                named(rng, SEARCH_POINTS, "KILL", 1)]
    return [named(rng, SEARCH_POINTS, "TERM", 1), named(rng, ("exported", "quantized"), "KILL", 1)]


@pytest.mark.parametrize("kind", ["search", "run"])
def test_a_chain_of_kills_then_resume(kind, tmp_path):
    scenario = Scenario(kind, tmp_path, "chain")
    moments = _chain(kind, random.Random(f"{SEED}-{kind}"))
    t0 = time.monotonic()
    landed = [str(m) for m in moments if scenario.interrupt(m)]
    scenario.complete()
    scenario.check_complete()
    print(f"{kind}: {len(landed)} of {len(moments)} kills landed ({', '.join(map(str, moments))}); "
          f"{time.monotonic() - t0:.0f} s")
    assert landed, "no kill landed"


@pytest.mark.skipif(MOMENTS <= 0, reason="set AUTOML_FAULT_MOMENTS=N for N single-kill moments")
@pytest.mark.timeout(300 + 180 * MOMENTS)
def test_many_moments_each_on_a_fresh_study(tmp_path):
    rng = random.Random(SEED)
    lifetime = {}
    for kind in ("search", "run"):  # an uninterrupted run of each: the span the times are drawn in
        ref = Scenario(kind, tmp_path / f"ref-{kind}", "ref")
        lifetime[kind] = ref.complete()
        ref.check_complete()
    t0, landed = time.monotonic(), []
    for i in range(MOMENTS):
        kind = ("search", "run")[i % 2]
        workers = 2 if i % 6 == 4 else 1  # every third search in two worker processes, killed by time
        if i % 4 < 2 and workers == 1:
            moment = named(rng, _points(kind))
        else:
            moment = Moment(rng.choice(("TERM", "KILL")), after=rng.uniform(0, lifetime[kind]))
        scenario = Scenario(kind, tmp_path / f"m{i}", f"m{i}", workers)
        if scenario.interrupt(moment):
            landed.append(f"{kind}{' --workers 2' if workers > 1 else ''} {moment}")
        scenario.complete()
        scenario.check_complete()
        print(f"moment {i}: {kind}{' --workers 2' if workers > 1 else ''} {moment} "
              f"({'landed' if landed and landed[-1].endswith(str(moment)) else 'missed'}), "
              f"{time.monotonic() - t0:.0f} s so far", flush=True)
    print(f"{len(landed)} of {MOMENTS} kills landed in {time.monotonic() - t0:.0f} s "
          f"(lifetimes: search {lifetime['search']:.0f} s, run {lifetime['run']:.0f} s):\n  " + "\n  ".join(landed))
