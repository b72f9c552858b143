"""Does the search pay for itself on data it never saw? At equal wall time T, per seed:

  (a) the default recipe (the search space's baseline: FPN-resnet18, Adam 2e-4, cosine, CE,
      128² random crops + flip) trained for as long as fits in T, on every train/ image: it
      takes no decision, so it needs no selection split;
  (b) `automl run <study> --budget T`: studies/camvid.yaml's settings (the options below
      override them), search, retrain the selected trial, export, INT8, bundle. Its search,
      TTA and INT8 select on a seeded share of train/ (data.val_fraction, 0.2 in the study file);
      its trials train on the rest, its final retrain on all of train/ (final.train_on_trainval,
      true under `automl run`);

both scored on the untouched split with the final stage's own mIoU code
(automl.final.evaluate, the torch model for (a); (b)'s figures are its report.json
`holdout.scores`: the shipped variant and the torch fp32 model). (b) never reads that split
before its final score; (a)'s curve points are scored on it too (it decides nothing from them).

Datasets (--dataset):
  camvid   ../shared/datasets/camvid-small (--data): 367 train / 101 val at 240x180, 11 classes;
           the untouched split is its val/ (b selects on 73 images carved from train/).
  em-like  generated here, deterministically (benchmarks/em_like.py), into <workdir>/em-like:
           30 train / 12 test at 512x512, 2 classes (cell, membrane); the untouched split is
           test/, and (b) carves its selection split from train/ like camvid (24 train / 6
           selection); (a) trains on all 30.

    python -m benchmarks.budget --minutes 45 --seeds 2 --no-rank
    python -m benchmarks.budget --dataset em-like --minutes 10 --seeds 2 --no-rank

Seeds run one after another; each seed s runs (a) and (b) (sampler.seed s, which seeds its
trials) at the same moment; (a) trains from the seed of (b)'s first trial, the default recipe's
baseline (paired: when (b) retrains the default recipe, both start from the same weights and
data order). Each arm is pinned to its own core (taskset, cores 0 and 1) with one thread
(--parallel, the default on two or more cores; --no-parallel runs them one after the other,
unpinned). A seed takes T plus what either arm runs past T (a few percent).
A table is printed per seed, then a summary
(mean ± half-range and s.d. over seeds). Every part writes
<workdir>/seed_<s>/<part>.json; `--part table` prints the tables again.

The rank part (skip it with --no-rank) then trains --configs configurations short and long
and gives the Spearman rank correlation between the search's short-trial score and a longer
training of the same configuration; on CamVid-small with the defaults it takes about another
30 minutes on two cores.

Disk: about 0.3 GB per seed (each (b) keeps its best trial's weights, the retrained model and a
bundle with ONNX fp32 and INT8), plus 10 MB for em-like's images. Memory: under 2 GB per arm.
Use an idle machine with at least two cores: another process on the same cores makes both arms
slower by different amounts, and the two arms no longer compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import optuna
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy.stats import spearmanr

from automl.bundle.predictor import TorchPredictor
from automl.bundle.variants import TORCH_FP32, Variant
from automl.config import load_study_file
from automl.final.evaluate import evaluate
from automl.final.retrain import trainval_split
from automl.study.runner import final_study, prepare
from automl.study.selection import describe
from automl.trial.augment import eval_transform
from automl.trial.engine import TimeStats, fit, subset_indices
from automl.trial.length import FinishBy
from automl.trial.objective import seed_of
from automl.trial_config import TrialConfig
from benchmarks import em_like
from benchmarks.common import camvid_data, fresh_workdir, pin

EVAL_SUBSET = 0.3  # rank part: intermediate epochs are scored on this share of val, the last on all of it
STUDY_FILE = Path(__file__).parents[1] / "studies" / "camvid.yaml"
CAMVID = Path("../shared/datasets/camvid-small")
# (a)'s final score predicts image by image (the bundle's predictor), slower than the batched
# val pass its calibration timed: this many of those passes are kept for it at the end
SCORE_PASSES = 1.5
# options that default to studies/camvid.yaml's value: option -> (section, key)
FROM_STUDY = {"trial_epochs": ("budget", "trial_epochs"), "trial_schedule_epochs": ("budget", "trial_schedule_epochs"),
              "patience": ("budget", "patience"), "startup_trials": ("sampler", "n_startup_trials"),
              "min_final_epochs": ("run", "min_final_epochs"), "search_fraction": ("run", "search_fraction"),
              "val_fraction": ("data", "val_fraction")}
# options a part's child process gets again
PASSED = ("minutes", "configs", "long_epochs", "seed", "rank_params", *FROM_STUDY)


def study_base() -> dict:
    return yaml.safe_load(STUDY_FILE.read_text())


def data_section(args: argparse.Namespace) -> dict:
    """The dataset's own `data:` keys, with the study file's split rule and --val-fraction."""
    own = camvid_data(args.data) if args.dataset == "camvid" else em_like.data_section(args.data)
    split = {k: v for k, v in study_base()["data"].items() if k in ("val_fraction", "split_seed", "min_val_images")}
    return {**own, **split, **({} if args.val_fraction is None else {"val_fraction": args.val_fraction})}


def study_doc(args: argparse.Namespace, threads: int) -> dict:
    """The study `automl run` gets: studies/camvid.yaml with the benchmark's data, the options,
    this arm's seed, one process's threads for latency, and no trial-count cap."""
    doc = study_base()
    for opt, (section, key) in FROM_STUDY.items():
        value = getattr(args, opt)
        if value:
            doc.setdefault(section, {})[key] = value
        elif value is not None:  # 0: off (patience, trial_schedule_epochs)
            doc.get(section, {}).pop(key, None)
    doc["budget"].update(n_trials=1000, timeout=args.minutes * 60)
    doc["sampler"]["seed"] = args.arm_seed
    doc["final"] = {**doc.get("final", {}), "latency_threads": threads}
    return {**doc, "name": "budget", "data": data_section(args), "search_space": "space.yaml", "device": "cpu"}


def _prepared(args: argparse.Namespace, threads: int):
    """Each part writes its own copy of the study file (they start at the same time); all name
    the study `budget`, so (b)'s run folder is <workdir>/runs/budget."""
    path = args.workdir / f"{args.part}.yaml"
    path.write_text(yaml.safe_dump(study_doc(args, threads)))
    return prepare(load_study_file(path, runs_root=args.workdir / "runs"))


def _holdout(prep):
    if prep.data.holdout is None:
        raise SystemExit(f"{prep.sf.data.root}: no untouched split (set --val-fraction; the folder needs val/ or "
                         "test/)")
    return prep.data.holdout


def baseline_config(prep, epochs: int, seed: int = 0) -> TrialConfig:
    """The space's baseline block as a TrialConfig: exactly the search's enqueued first trial."""
    trial = optuna.trial.FixedTrial(prep.space.checked_baseline())
    return prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=seed)


def part_default(args: argparse.Namespace) -> dict:
    """(a): one calibration epoch times an epoch and a val pass; the run is planned from them and
    re-planned after its second epoch (the final retrain's FinishBy) so that training, its curve
    points (on the study's eval.subset of the holdout, as (b)'s final scores its own) and the
    final score end at T. The calibration counts against T."""
    t0 = time.monotonic()
    threads = pin(args.cpu)
    prep = _prepared(args, threads)
    holdout = _holdout(prep)
    # every train/ image (train + the selection split); the curve is scored on the holdout
    data = dataclasses.replace(prep.data, splits={"train": trainval_split(prep.data), "val": holdout},
                               holdout_key=None)
    # (b)'s baseline, its first trial, trains from this seed: when (b) retrains the default recipe
    # the two arms start from the same weights and data order, and differ only in how they use T
    seed = seed_of(args.arm_seed, 0)
    calib = fit(baseline_config(prep, 1, seed), data, prep.runtime)
    epoch_s, pass_s = calib.times.train_s, calib.times.eval_s
    subset = prep.sf.eval.subset
    sub_s = pass_s * len(subset_indices(len(holdout), subset)) / len(holdout)
    finish_by = t0 + args.minutes * 60 - SCORE_PASSES * pass_s
    planned = max(1, math.floor((finish_by - time.monotonic() - 3 * sub_s - pass_s) / epoch_s))
    cfg = baseline_config(prep, planned, seed)
    times = TimeStats()
    length = FinishBy(planned, finish_by, eval_points=4, subset_pass_s=sub_s, full_pass_s=pass_s,
                      subset_passes=lambda: times.eval_subset_s)
    res = fit(cfg, data, prep.runtime, eval_subset=subset, eval_batch_size=prep.sf.eval.batch_size, times=times,
              length=length)
    t_score = time.monotonic()
    n_cls, ignore = cfg.data.num_classes, cfg.data.ignore_index
    scores = evaluate(TorchPredictor(res.model.cpu().eval(), eval_transform(cfg.data), n_cls), holdout, n_cls, ignore)
    wall = time.monotonic() - t0
    return {"part": "default", "seed": args.arm_seed, "train_seed": seed, "minutes": args.minutes, "dataset": args.dataset,
            "holdout": prep.data.sources["holdout"], "holdout_images": len(holdout), "train_images": len(data.train),
            "holdout_miou": scores.miou, "holdout_scores": scores.as_dict(cfg.data.classes),
            "holdout_miou_engine": res.history[-1].miou, "epochs": res.epochs, "planned_epochs": planned,
            "epoch_s": round(statistics.median(times.epoch_train_s[1:] or times.epoch_train_s), 2),
            "calib_epoch_s": round(epoch_s, 2), "calib_pass_s": round(pass_s, 2), "score_s": round(time.monotonic() - t_score, 1),
            "curve": {h.epoch: round(h.miou, 4) for h in res.history}, "threads": threads,
            "wall_s": round(wall, 1), "used_frac": round(wall / (args.minutes * 60), 3),
            "config": cfg.with_changes(epochs=res.epochs).summary()}


def part_run(args: argparse.Namespace) -> dict:
    """(b): the real CLI, `automl run --budget T`, in this process's core/thread setting."""
    t0 = time.monotonic()
    threads = pin(args.cpu)
    prep = _prepared(args, threads)
    _holdout(prep)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "automl", "run", str(args.workdir / "run.yaml"), "--runs-root",
           str(args.workdir / "runs"), "--budget", f"{args.minutes:g}m"]
    with open(args.workdir / "run.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.monotonic() - t0
    report = json.loads((prep.sf.run_dir / "bundle" / "report.json").read_text())
    study = final_study(prep.sf, prep.storage_url)
    attrs = study.user_attrs
    states = [t.state.name for t in study.trials]
    d = report["default_predictor"]
    shipped = Variant(d["backend"], d["precision"], d["tta"]).key
    held, val = report["holdout"]["scores"], report["evaluation"]["val"]
    selection = attrs.get("selection")
    return {"part": "run", "seed": args.arm_seed, "minutes": args.minutes, "dataset": args.dataset,
            "holdout": report["holdout"]["source"], "holdout_images": report["holdout"]["images"],
            "train_images": report["data_split"]["train_images"],
            "selection_images": report["data_split"]["selection_images"],
            "holdout_miou": _fp32_holdout(held, shipped), "shipped": d["variant"], "shipped_key": shipped,
            "shipped_holdout_miou": held[shipped]["miou"], "int8_holdout_miou": held.get("ort_int8", {}).get("miou"),
            "holdout_by_variant": {k: v["miou"] for k, v in held.items()},
            "selection_miou": val[TORCH_FP32.key]["miou"], "shipped_selection_miou": val.get(shipped, {}).get("miou"),
            "int8_accepted": report["int8"]["accepted"], "epochs": report["retrain"]["epochs"],
            "final_wall_s": report["wall_s"], "retrain_wall_s": report["retrain"]["wall_s"],
            "trials": {s: states.count(s) for s in sorted(set(states))}, "threads": threads,
            "best_trial": report["search"]["retrained_trial"], "config": report["retrain"]["config"],
            "search_wall_s": report["search"]["wall_s"], "selection": selection,
            "selection_text": describe(selection) if selection else None,
            "expected_epochs": attrs.get("run_expected_epochs"), "run_used_frac": attrs.get("run_used_frac"),
            "run_search_s": attrs.get("run_search_s"), "run_final_s": attrs.get("run_final_s"),
            "options": {opt: getattr(args, opt) for opt in FROM_STUDY},
            "wall_s": round(wall, 1), "used_frac": round(wall / (args.minutes * 60), 3)}


def _fp32_holdout(held: dict, shipped: str) -> float | None:
    """The fp32 model's holdout mIoU: torch fp32's, or what ships when it is fp32 without TTA;
    None when a short run left the holdout's references out (automl.final.extras)."""
    if TORCH_FP32.key in held:
        return held[TORCH_FP32.key]["miou"]
    plain = Variant.parse(shipped)
    return held[shipped]["miou"] if plain.precision == "fp32" and not plain.tta else None


def rank_configs(prep, n: int, seed: int, epochs: int, params: tuple[str, ...] = ()) -> list[TrialConfig]:
    """The baseline, the space's portfolio, then configurations drawn at random from the space
    (conditional branches included) up to n, each with the trial's own seed. ``params`` (glob
    patterns, e.g. ``aug.*``): draw only those parameters, every other one at the baseline's
    value, and skip the portfolio (its recipes change everything)."""
    base = optuna.samplers.RandomSampler(seed=seed)
    configs = [baseline_config(prep, epochs)]
    if params:
        fixed = {k: v for k, v in prep.space.checked_baseline().items() if not any(fnmatch(k, p) for p in params)}
        sampler = optuna.samplers.PartialFixedSampler(fixed, base)
    else:
        sampler = base
        for i, recipe in enumerate(prep.space.checked_portfolio()):
            trial = optuna.trial.FixedTrial(recipe)
            configs.append(prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=i + 1))
    study = optuna.create_study(sampler=sampler)
    while len(configs) < n:
        trial = study.ask()
        configs.append(prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=trial.number + 1))
    return configs[:n]


def part_rank(args: argparse.Namespace) -> dict:
    """Short (the search's trial: trial_epochs, subset-scored rungs, full val at the end) and long
    (args.long_epochs) training of configuration shard args.shard (k of n)."""
    threads = pin(args.cpu)
    prep = _prepared(args, threads)
    k, n = (int(v) for v in args.shard.split("/"))
    rows = []
    short_ep = args.trial_epochs
    params = tuple(p for p in (args.rank_params or "").split(",") if p)
    for i, cfg in enumerate(rank_configs(prep, args.configs, args.seed, short_ep, params)):
        if i % n != k:
            continue
        t0 = time.monotonic()
        short = fit(cfg, prep.data, prep.runtime, eval_subset=EVAL_SUBSET, eval_epochs={short_ep}) if args.short else None
        long_cfg = cfg.model_copy(update={"epochs": args.long_epochs})
        full = fit(long_cfg, prep.data, prep.runtime, eval_epochs={short_ep})
        rows.append({"i": i, "config": cfg.summary(), "augment": cfg.augment.model_dump(),
                     "short": short and short.history[-1].miou, "short_epochs": short_ep,
                     "at_trial_epochs_of_long": next(h.miou for h in full.history if h.epoch == short_ep),
                     "long": full.history[-1].miou, "long_epochs": args.long_epochs, "wall_s": round(time.monotonic() - t0, 1)})
        (args.workdir / f"rank_{k}.json").write_text(json.dumps({"rows": rows}, indent=1))  # keep what is done
    return {"part": f"rank_{k}", "rows": rows, "long_epochs": args.long_epochs}


def _child(args: argparse.Namespace, part: str, cpu: int | None, workdir: Path, seed: int = 0,
           extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.budget", "--part", part, "--dataset", args.dataset, "--data",
           str(args.data), "--workdir", str(workdir), "--arm-seed", str(seed),
           *(x for opt in PASSED if getattr(args, opt) is not None
             for x in (f"--{opt.replace('_', '-')}", str(getattr(args, opt)))),
           *([] if args.short else ["--no-short"]), *extra]
    if cpu is None:
        return subprocess.Popen(cmd)
    # taskset pins the interpreter from its start; the part pins itself again and sets one thread
    taskset = ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []
    return subprocess.Popen([*taskset, *cmd, "--cpu", str(cpu)], env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait(procs: list[subprocess.Popen]) -> None:
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a benchmark part failed (exit codes {codes}); see {procs[0].args}")


def _load(folder: Path, name: str) -> dict | None:
    p = folder / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _pct(frac: float | None) -> str:
    return "?" if frac is None else f"{frac:.0%}"


def _expected(b: dict) -> str:
    e = b.get("expected_epochs") or {}
    return "; ".join(f"{who} #{x['trial']} ~{x['epochs']:.0f} ({x['epoch_s']:.2f} s/epoch)" for who, x in e.items()) or "?"


def print_seed(folder: Path) -> None:
    a, b = _load(folder, "default"), _load(folder, "run")
    ref = a or b
    if ref is None:
        return
    split = f"{ref['holdout']}, {ref['holdout_images']} images"
    t = Table(title=f"{ref['dataset']}, seed {ref['seed']}, T = {ref['minutes']:g} min: mIoU on the untouched "
                    f"split ({escape(split)})")
    for col in ("", "holdout mIoU", "wall min (% of T)", "train images", "trials", "final epochs", "config"):
        t.add_column(col)
    if a:
        t.add_row("(a) default recipe", f"{a['holdout_miou']:.4f}", f"{a['wall_s'] / 60:.1f} ({_pct(a['used_frac'])})",
                  str(a["train_images"]), "-", f"{a['epochs']} x {a['epoch_s']:.2f} s", escape(a["config"]))
    if b:
        trials = ", ".join(f"{v} {k.lower()}" for k, v in b["trials"].items())
        int8 = "" if b["int8_holdout_miou"] is None else f"; int8 {b['int8_holdout_miou']:.4f}"
        fp32 = "no fp32 reference" if b["holdout_miou"] is None else f"{b['holdout_miou']:.4f} torch fp32"
        t.add_row("(b) automl run", f"{fp32}; shipped {escape(b['shipped'])} "
                  f"{b['shipped_holdout_miou']:.4f}{int8}",
                  f"{b['wall_s'] / 60:.1f} ({_pct(b['used_frac'])}; run_used_frac {_pct(b['run_used_frac'])})",
                  f"{b['train_images']} (+{b['selection_images']} selection)", trials, str(b["epochs"]),
                  escape(b["config"]))
    con = Console(width=200)
    con.print(t)
    if b:
        con.print(f"(b) retrained trial #{b['best_trial']['number']}; selection: "
                  f"{escape(b['selection_text'] or 'no incumbent rule record')}")
        con.print(f"(b) expected final epochs: {escape(_expected(b))}; search {(b['run_search_s'] or 0) / 60:.1f} min, "
                  f"final {(b['run_final_s'] or 0) / 60:.1f} min")


def _spread(values: list[float], digits: int = 4) -> tuple[str, str, str, str]:
    """mean, ± half-range, s.d. (two or more values), the values."""
    mean = statistics.fmean(values)
    half = (max(values) - min(values)) / 2
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    f = f"{{:.{digits}f}}"
    return f.format(mean), "± " + f.format(half), f.format(sd), ", ".join(f.format(v) for v in values)


def print_summary(folders: list[Path]) -> None:
    if not folders:
        return
    pairs = [(a, b) for a, b in ((_load(f, "default"), _load(f, "run")) for f in folders)]
    a_all, b_all = [a for a, _ in pairs if a], [b for _, b in pairs if b]
    both = [(a, b) for a, b in pairs if a and b]
    if not a_all and not b_all:
        return
    rows: list[tuple[str, list[float], int]] = [
        ("(a) default recipe, holdout mIoU", [a["holdout_miou"] for a in a_all], 4),
        ("(b) shipped, holdout mIoU", [b["shipped_holdout_miou"] for b in b_all], 4),
        ("(b) torch fp32, holdout mIoU", [b["holdout_miou"] for b in b_all if b["holdout_miou"] is not None], 4),
        ("(b) shipped − (a)", [b["shipped_holdout_miou"] - a["holdout_miou"] for a, b in both], 4),
        ("(b) torch fp32 − (a)", [b["holdout_miou"] - a["holdout_miou"] for a, b in both
                                  if b["holdout_miou"] is not None], 4),
        ("(b) shipped − (b) torch fp32", [b["shipped_holdout_miou"] - b["holdout_miou"] for b in b_all
                                          if b["holdout_miou"] is not None], 4),
        ("(b) budget used, % of T (run_used_frac)", [100 * b["run_used_frac"] for b in b_all
                                                     if b.get("run_used_frac") is not None], 1),
        ("(b) wall, % of T", [100 * b["used_frac"] for b in b_all], 1),
        ("(a) wall, % of T", [100 * a["used_frac"] for a in a_all], 1),
        ("(b) final epochs", [b["epochs"] for b in b_all], 0),
        ("(a) epochs", [a["epochs"] for a in a_all], 0),
    ]
    ref = (a_all or b_all)[0]
    t = Table(title=f"{ref['dataset']}, T = {ref['minutes']:g} min, {len(pairs)} seed(s): untouched split "
                    f"{escape(ref['holdout'])}")
    for col in ("", "mean", "half-range", "s.d.", "per seed"):
        t.add_column(col)
    for label, values, digits in rows:
        if values:
            t.add_row(label, *_spread(values, digits))
    Console(width=200).print(t)


def print_rank(workdir: Path) -> None:
    rows = sorted((r for f in sorted(workdir.glob("rank_*.json")) for r in json.loads(f.read_text())["rows"]),
                  key=lambda r: r["i"])
    if not rows:
        return
    r = Table(title="short trial vs long training, same configuration (scored on the selection split)")
    ep = rows[0]["short_epochs"]
    for col in ("#", "config", f"short ({ep} ep)", "long", f"long at ep {ep}", "wall min"):
        r.add_column(col)
    for row in rows:
        short = "-" if row["short"] is None else f"{row['short']:.4f}"
        r.add_row(str(row["i"]), row["config"], short, f"{row['long']:.4f}",
                  f"{row['at_trial_epochs_of_long']:.4f}", f"{row['wall_s'] / 60:.1f}")
    Console(width=200).print(r)
    if len(rows) >= 3:
        long = [x["long"] for x in rows]
        for label, key in ((f"short trial ({ep} ep, own schedule)", "short"),
                           (f"epoch {ep} of the long schedule", "at_trial_epochs_of_long")):
            if any(x[key] is None for x in rows):
                continue
            rho, p = spearmanr([x[key] for x in rows], long)
            Console().print(f"Spearman rank correlation, {label} vs long ({rows[0].get('long_epochs', '?')} ep): "
                            f"{rho:.3f} (p = {p:.3f}, n = {len(rows)})")


def seed_folders(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("seed_*"), key=lambda p: int(p.name.split("_")[1]))


def print_table(workdir: Path) -> None:
    folders = seed_folders(workdir)
    for folder in folders:
        print_seed(folder)
    if folders:
        print_summary(folders)
    print_rank(workdir)


def study_defaults(args: argparse.Namespace) -> None:
    """For another benchmark that builds its study as this one does (``_prepared``): the options
    it does not have take studies/camvid.yaml's values, and T is a placeholder (no budget)."""
    for opt in ("val_fraction", *FROM_STUDY):
        setattr(args, opt, getattr(args, opt, None))
    args.minutes = getattr(args, "minutes", 1.0)
    args.arm_seed = getattr(args, "arm_seed", None) or 0
    _defaults(args)


def _defaults(args: argparse.Namespace) -> None:
    """Options not given take studies/camvid.yaml's value; --data its dataset's place."""
    doc = study_base()
    for opt, (section, key) in FROM_STUDY.items():
        if getattr(args, opt) is None:
            setattr(args, opt, doc.get(section, {}).get(key))
    args.workdir = args.workdir.resolve()
    if args.data is None:
        args.data = CAMVID if args.dataset == "camvid" else args.workdir / "em-like"
    args.data = args.data.resolve()


def _ensure_data(args: argparse.Namespace) -> None:
    if args.dataset == "em-like":
        em_like.generate(args.data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["camvid", "em-like"], default="camvid")
    ap.add_argument("--data", type=Path, help="camvid: the dataset (default ../shared/datasets/camvid-small); "
                                              "em-like: where it is generated (default <workdir>/em-like)")
    ap.add_argument("--minutes", type=float, default=45, help="T, the wall time of (a) and of (b)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds, run one after another")
    ap.add_argument("--first-seed", type=int, default=0, help="the first seed (seed 0: studies/camvid.yaml's)")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_budget"))
    ap.add_argument("--part", choices=["all", "default", "run", "rank", "table"], default="all")
    ap.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    ap.add_argument("--cpu", type=int, default=None, help="pin this part to one core (set by --parallel)")
    ap.add_argument("--arm-seed", type=int, default=0, help="one part's seed (set by --seeds)")
    ap.add_argument("--configs", type=int, default=6, help="configurations in the rank correlation")
    ap.add_argument("--long-epochs", type=int, default=15, help="the long training's epochs")
    ap.add_argument("--seed", type=int, default=1, help="rank part: the random draw of configurations")
    study = "default: studies/camvid.yaml's"
    ap.add_argument("--trial-epochs", type=int, help=f"the search's trial length ({study})")
    ap.add_argument("--startup-trials", type=int, help=f"(b): TPE's random start-up trials ({study})")
    ap.add_argument("--patience", type=int, help=f"(b): budget.patience (0: off; {study})")
    ap.add_argument("--min-final-epochs", type=int, help=f"(b): run.min_final_epochs ({study})")
    ap.add_argument("--search-fraction", type=float, help=f"(b): run.search_fraction ({study})")
    ap.add_argument("--trial-schedule-epochs", type=int, help=f"(b): budget.trial_schedule_epochs (0: off; {study})")
    ap.add_argument("--val-fraction", type=float, help=f"(b): data.val_fraction, the selection split ({study})")
    ap.add_argument("--no-rank", dest="rank", action="store_false", help="(a) and (b) only")
    ap.add_argument("--no-short", dest="short", action="store_false",
                    help="rank part: long training only (epoch trial_epochs of it is what a trial with "
                         "budget.trial_schedule_epochs = long epochs scores)")
    ap.add_argument("--shard", default="0/1", help="rank part: this process's share k/n of the configurations")
    ap.add_argument("--rank-params", default="", help="rank part: draw only these parameters (comma-separated globs, "
                                                      "e.g. 'aug.*'), the others at the baseline's values")
    args = ap.parse_args()
    _defaults(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.part == "table":
        return print_table(args.workdir)
    if args.part != "all":
        if not (args.workdir / "space.yaml").exists():
            fresh_workdir(args.workdir)
        _ensure_data(args)
        out = {"default": part_default, "run": part_run, "rank": part_rank}[args.part](args)
        (args.workdir / f"{out['part']}.json").write_text(json.dumps(out, indent=1))
        return None
    fresh_workdir(args.workdir)
    _ensure_data(args)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        folder = fresh_workdir(args.workdir / f"seed_{seed}")
        if args.parallel:
            _wait([_child(args, "default", 0, folder, seed), _child(args, "run", 1, folder, seed)])
        else:
            for part in ("default", "run"):
                _wait([_child(args, part, None, folder, seed)])
        print_seed(folder)  # the summary comes after the last seed
    if args.rank:
        if args.parallel:
            _wait([_child(args, "rank", k, args.workdir, extra=("--shard", f"{k}/2")) for k in range(2)])
        else:
            _wait([_child(args, "rank", None, args.workdir)])
    print_summary(seed_folders(args.workdir))
    print_rank(args.workdir)
    return None


if __name__ == "__main__":
    main()
