"""The final stage on CamVid-small: retrain a fixed recipe, decide on TTA, INT8, latency.

Trains FPN (or Unet) resnet18 with the field guide's default CPU recipe (Adam 2e-4, cosine,
CE, 128x128 random crops with horizontal flip, batch 8, random init) through ``run_final``, so
the numbers are the ones a bundle would ship, and prints the report table (fp32 / TTA / int8
val mIoU and batch-1 latencies). The recipe is entered as the only completed trial of a fresh
study ``camvid-final-<arch>`` (no search runs); the bundle lands in runs/<that study>/bundle/.

    python -m benchmarks.final_camvid --epochs 40            # the real measurement (long: see
                                                            # benchmarks/README.md for its time)
    python -m benchmarks.final_camvid --epochs 1             # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import math
import warnings
from pathlib import Path

import optuna
from rich.console import Console
from rich.logging import RichHandler

from automl.config import load_study_file
from automl.final import run_final
from automl.final.report import report_table
from automl.study.storage import open_storage, resolve_url
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "camvid-small"


def recipe(classes: tuple[str, ...], ignore_index: int, arch: str, epochs: int,
           encoder_weights: str | None) -> TrialConfig:
    return TrialConfig(
        seed=0, epochs=epochs, batch_size=8,
        data=DataSpec(classes=classes, ignore_index=ignore_index),
        model=ModelSpec(arch=arch, encoder="resnet18", encoder_depth=5, encoder_weights=encoder_weights),
        optimizer=OptimizerSpec(name="adam", lr=2e-4), schedule=ScheduleSpec(name="cosine"),
        loss=LossSpec(ce=1.0), augment=AugmentSpec(crop_height=128, crop_width=128, hflip=0.5))


def fresh_study(sf, cfg: TrialConfig) -> None:
    """Replace the benchmark's study with one completed trial holding ``cfg`` (no search)."""
    url = resolve_url(sf)
    Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    storage = open_storage(url, sf.storage)
    try:
        optuna.delete_study(study_name=sf.name, storage=storage)
    except KeyError:
        pass
    study = optuna.create_study(study_name=sf.name, storage=storage, direction="maximize")
    study.set_user_attr("note", "benchmarks/final_camvid.py: fixed recipe, no search")
    # A completed trial needs a value; NaN would break best_trial, so 0 marks "not searched".
    study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs={"config": cfg.to_dict(), "benchmark": True}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, required=True, help="retrain epochs")
    ap.add_argument("--arch", choices=["FPN", "Unet"], default="FPN")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="camvid-small folder")
    ap.add_argument("--threads", type=int, default=2, help="threads for the latency report")
    ap.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    ap.add_argument("--encoder-weights", help="local encoder weights file (default: random init)")
    ap.add_argument("--runs-root", type=Path, default=REPO / "runs")
    ap.add_argument("--reuse-model", action="store_true",
                    help="reuse runs/camvid-final-<arch>/final_model if it holds this recipe (skips the retrain)")
    args = ap.parse_args()

    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not (args.data / "train" / "images").is_dir():
        raise SystemExit(f"{args.data}: not the camvid-small folder (expected train/images, val/images)")
    name = f"camvid-final-{args.arch.lower()}"
    sf = load_study_file(REPO / "studies" / "camvid.yaml", runs_root=args.runs_root, overrides={
        "name": name, "data.root": str(args.data.resolve()), "device": args.device,
        "final.epochs": args.epochs, "final.latency_threads": args.threads})
    cfg = recipe(tuple(sf.data.classes), sf.data.ignore_index, args.arch, args.epochs, args.encoder_weights)
    fresh_study(sf, cfg)
    result = run_final(sf, reuse_model=args.reuse_model)
    console.print(report_table(result.report))
    r = result.report
    q, t = r["int8"], r["tta"]
    console.print(f"TTA {t['views']}: gain {t['gain']:+.4f} -> {'kept' if t['kept'] else 'dropped'}; "
                  f"INT8 {'accepted' if q['accepted'] else 'rejected'} ({q['chosen']}, drop "
                  f"{q['drop'] if q['drop'] is not None else math.nan:+.4f}, limit {q['max_drop']})")
    console.print(f"retrain {r['retrain']['epochs']} epochs in {r['retrain']['wall_s']} s; whole stage "
                  f"{r['wall_s']} s; report: {result.bundle_dir / 'report.md'}")


if __name__ == "__main__":
    main()
