"""The morning view: a real search with the dashboard hooks, then the real `automl dashboard`
server on 127.0.0.1, read through its HTTP API; and the notes' content on their own."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note, save_note
from PIL import Image

from automl.config import load_study_file
from automl.study.runner import prepare, run_search, setup_study
from automl.trial.objective import SURPLUS
from automl.view.dashboard_hooks import NotesCallback, morning_view
from automl.view.notes import USER_MARKER


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def _dashboard_url(proc: subprocess.Popen, deadline_s: float = 90) -> str:
    """The URL `automl dashboard` prints once its server is bound.

    Lines are read on a thread: select() on a buffered pipe misses a line that arrived in the
    same chunk as the one before it (it sits in Python's buffer, not in the pipe)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    end, seen = time.monotonic() + deadline_s, []
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard/studies/\d+", line)
        if m:
            return m.group(1)
    raise AssertionError("dashboard did not start:\n" + "".join(seen) + (proc.stderr.read() if proc.poll() else ""))


@pytest.fixture
def searched(tiny_study, runs_root):
    """A finished 2-trial study: the baseline completes, a ~0 learning rate is pruned at epoch 1."""
    path = tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 2})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    study = setup_study(prep)
    study.enqueue_trial({"model": "Unet/resnet18", "optimizer": "sgd", "sgd.lr": 1e-7, "schedule": "constant",
                         "aux_head": False})
    view = morning_view(prep)  # as the CLI hands it to the search
    run_search(prep, study, callbacks=view.callbacks, completed_hooks=view.completed_hooks)
    return path, study


def test_dashboard_serves_notes_and_artifacts(searched, runs_root, tmp_path):
    path, study = searched
    done, pruned = study.get_trials()
    assert (done.state, pruned.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert done.user_attrs["artifact_s"] > 0 and "prediction_grid" in done.user_attrs
    assert "Search summary: tiny" in get_note(study)  # written by the callback, before any server

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "automl", "dashboard", str(path), "--runs-root", str(runs_root),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base = _dashboard_url(proc)
        summaries = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
        (sid,) = [s["study_id"] for s in summaries if s["study_name"] == "tiny"]
        detail = json.loads(_get(f"{base}/api/studies/{sid}"))
        assert detail["objective_names"] == ["val mIoU"]
        t_done, t_pruned = sorted(detail["trials"], key=lambda t: t["number"])

        note = t_done["note"]["body"]
        for text in ("Why it stopped:** completed (2 epochs)", "Unet / resnet18", "adamw, lr 5.00e-03",
                     "augmentation", "loss weights", "parameters", "ms/image", "Per-class IoU", "| disc |"):
            assert text in note, text
        assert "pruned at epoch 1" in t_pruned["note"]["body"]
        assert t_pruned["artifacts"] == []

        (art,) = t_done["artifacts"]
        assert art["mimetype"] == "image/png" and art["filename"].endswith("_predictions.png")
        route = f"/artifacts/{sid}/{t_done['trial_id']}/{art['artifact_id']}"
        assert f"]({route})" in note  # the note shows the grid inline
        png = Image.open(io.BytesIO(_get(base + route)))
        assert png.format == "PNG" and png.width >= 3 * 96 and png.height >= 4 * 96  # 4 of tiny's 6 val images

        study_note = detail["note"]["body"]
        for text in ("# Search summary: tiny", "2/2 finished", "Best so far: trial #0", "Pruned: 1 after epoch 1",
                     "Parameter importances", USER_MARKER):
            assert text in study_note, text
        for body in (note, t_pruned["note"]["body"], study_note):
            assert str(tmp_path) not in body and "sqlite" not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()


def _fake_trial(state: TrialState, user_attrs: dict, value: float | None = None) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, value=value, user_attrs=user_attrs)


def test_notes_explain_failures_and_keep_user_text(tiny_study, runs_root):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    study = optuna.create_study(direction="maximize")
    study.add_trial(_fake_trial(TrialState.FAIL, {"stop_reason": "failed: OutOfMemoryError: CUDA out of memory"}))
    study.add_trial(_fake_trial(TrialState.FAIL, {}))  # the worker died: no reason recorded
    study.add_trial(_fake_trial(TrialState.FAIL, {"stop_reason": SURPLUS}))
    callback = NotesCallback(sf)
    for t in study.get_trials():
        callback(study, t)

    first, second, _ = study.get_trials()
    trial_note = get_note(optuna.Trial(study, first._trial_id))
    assert "**Why it stopped:** failed: OutOfMemoryError: CUDA out of memory" in trial_note
    assert "no reason recorded" in get_note(optuna.Trial(study, second._trial_id))

    summary = get_note(study)
    assert "No completed trial yet." in summary and "Not yet: needs at least 3 complete trials" in summary
    assert "#0: failed: OutOfMemoryError" in summary and SURPLUS not in summary  # surplus is no failure

    # what the user types under the marker in the dashboard survives the next refresh
    save_note(study, summary + "\nlooks like the GPU is too small")
    study.add_trial(_fake_trial(TrialState.PRUNED, {"stop_reason": "pruned at epoch 2 (val mIoU 0.1)",
                                                    "epochs_run": 2}))
    callback(study, study.get_trials()[-1])
    refreshed = get_note(study)
    assert refreshed.endswith("looks like the GPU is too small") and "Pruned: 1 after epoch 2" in refreshed
    assert refreshed.count(USER_MARKER) == 1


def test_callback_never_raises(tiny_study, runs_root, caplog):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    study = optuna.create_study(direction="maximize")
    study.add_trial(_fake_trial(TrialState.COMPLETE, {"config": {"not": "a config"}}, value=0.5))
    NotesCallback(sf)(study, study.get_trials()[0])  # a broken config must not end study.optimize
    assert "could not write the dashboard notes" in caplog.text



def test_study_note_shows_audit_and_final_report(tiny_study, runs_root, tmp_path):
    from automl.study.artifacts import attach_file
    from automl.view.notes import study_summary

    sf = load_study_file(tiny_study(), runs_root=runs_root)
    study = optuna.create_study(direction="maximize")
    heatmap = tmp_path / "heatmap_ring.png"
    Image.new("RGB", (8, 8)).save(heatmap)
    report = tmp_path / "report.md"
    report.write_text("# Final report: tiny\n\n## Summary\n\n| variant | val mIoU |\n|---|---|\n| ORT int8 | 0.61 |\n")
    study.set_user_attr("audit_findings", ["ring: 0.4 % of train pixels"])
    study.set_user_attr("audit_artifacts", {heatmap.name: attach_file(sf.run_dir, study, heatmap)})
    report_id = attach_file(sf.run_dir, study, report)
    study.set_user_attr("final", {"bundle": str(tmp_path / "bundle"), "default": "ort_int8", "val_miou_ort_int8": 0.61})

    note = study_summary(study, sf, None)
    sid = study._study_id
    assert "- ring: 0.4 % of train pixels" in note and f"![heatmap_ring.png](/artifacts/{sid}/" in note
    assert f"[report.md](/artifacts/{sid}/{report_id})" in note and "Bundle default: **ort_int8**" in note
    assert "### Final report: tiny" in note and "| ORT int8 | 0.61 |" in note  # included, headings demoted
    assert str(tmp_path) not in note
