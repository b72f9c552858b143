"""`automl rerun`: retrain exactly one trial of a study from its stored config and seed."""

from __future__ import annotations

import argparse

from rich.console import Console

from automl.cli.common import add_study_args, open_latest_study
from automl.terminal import markup_safe


def cmd_rerun(args: argparse.Namespace, console: Console) -> int:

    from automl.errors import AutoMLError
    from automl.study.runner import load_data
    from automl.trial.checkpoint import save_model
    from automl.trial.engine import Runtime, fit
    from automl.trial_config import TrialConfig

    opened = open_latest_study(args, console, stage=args.stage)
    if opened is None:
        return 1
    sf, storage, study = opened.sf, opened.storage, opened.study
    name = study.study_name
    matches = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
    if not matches or "config" not in matches[0].user_attrs:
        raise AutoMLError(f"study {name} has no trial #{args.trial} with a stored config")
    original = matches[0]
    cfg = TrialConfig.from_dict(original.user_attrs["config"])
    if args.epochs:
        cfg = cfg.with_changes(epochs=args.epochs)
    console.print(f"rerun of trial #{args.trial}: {cfg.summary()}, seed {cfg.seed}, {cfg.epochs} epochs")
    data = load_data(sf)
    stored = original.intermediate_values

    def on_epoch(res):
        before = stored.get(res.epoch)
        was = f"  (search: {before:.4f})" if before is not None else ""
        console.print(f"epoch {res.epoch}/{cfg.epochs}  val mIoU {res.miou:.4f}{was}")

    result = fit(cfg, data, Runtime.resolve(args.device or sf.device), on_epoch=on_epoch,
                 eval_subset=sf.eval.subset, eval_batch_size=sf.eval.batch_size, num_workers=sf.num_workers)
    folder = f"trial_{args.trial}" if name == sf.name else f"{name.removeprefix(sf.name + '.')}_trial_{args.trial}"
    out = save_model(result.model, cfg, sf.run_dir / "reruns" / folder,
                     extra={"trial_number": args.trial, "value": result.history[-1].miou})
    console.print(f"saved to {markup_safe(out.relative_to(sf.run_dir.parent))}", highlight=False)
    if cfg == TrialConfig.from_dict(original.user_attrs["config"]):  # not with other --epochs
        _fill_best_trial(sf, storage, name, args.trial, result.model, cfg, console)
    return 0


def _fill_best_trial(sf, storage, name: str, number: int, model, cfg, console: Console) -> None:
    """The search could not save this trial's weights as the best trial's (a full disk): put the
    retrained ones in ``best_trial`` so that `automl inspect` can use them."""
    from automl.study.checkpoints import BestTrialCheckpoint, missing_best_weights

    missing = missing_best_weights(sf, storage, "automl rerun")
    if missing is None or (missing.study_name, missing.trial_number) != (name, number):
        return
    checkpoint = BestTrialCheckpoint(sf.run_dir)
    if checkpoint.restore(model, cfg, missing):
        console.print(f"{markup_safe(checkpoint.dir.relative_to(sf.run_dir.parent))} now holds these weights: the "
                      "best trial's were never saved", highlight=False, soft_wrap=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerun", help="retrain one trial exactly (same config and seed)")
    add_study_args(p)
    p.add_argument("--trial", type=int, required=True, help="trial number")
    p.add_argument("--epochs", type=int, help="train this many epochs instead of the trial's")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--stage", help="a staged search's stage whose trial N this is (default: the latest stage begun)")
    p.set_defaults(func=cmd_rerun)
