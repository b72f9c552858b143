"""Share of a trial's wall time spent outside forward/backward/optimizer-step, on CamVid-small.

Compares one automl trial (the search's own objective, everything included: model build,
latency probe, augmentation, evaluation, storage writes) with the minimal hand-written
Optuna + SMP loop a user would otherwise write (PNG decoding in a DataLoader, full-size val
every epoch). Same model, crop, batch and epochs for both.

    python -m benchmarks.trial_overhead --data ../shared/datasets/camvid-small --epochs 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import optuna
import torch
import yaml
from PIL import Image
from rich.console import Console
from rich.table import Table

from benchmarks.common import camvid_data


def automl_trial(data_root: Path, epochs: int, eval_subset: float, workdir: Path) -> dict:
    from automl.config import load_study_file
    from automl.study.runner import prepare, run_search

    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "cpu.yaml").read_text())
    (workdir / "space.yaml").write_text(yaml.safe_dump(space))
    study_doc = {"name": "overhead", "data": camvid_data(data_root),
                 "search_space": "space.yaml", "budget": {"n_trials": 1, "trial_epochs": epochs},
                 "eval": {"batch_size": 8, "subset": eval_subset},
                 # studies/camvid.yaml's pruner: val is scored at the rungs (on the subset) and at the end
                 "pruner": {"type": "hyperband", "min_resource": 2, "reduction_factor": 3}, "device": "cpu"}
    (workdir / "study.yaml").write_text(yaml.safe_dump(study_doc))
    t0 = time.perf_counter()
    sf = load_study_file(workdir / "study.yaml", runs_root=workdir / "runs")
    prep = prepare(sf)
    t_prepare = time.perf_counter() - t0
    t_search = time.perf_counter()
    study = run_search(prep)  # the enqueued baseline: FPN-resnet18, Adam, cosine, CE, 128² crops + flip
    # Wall time of the whole search call, not the trial's own wall_s: it includes the study setup,
    # Optuna's storage writes, the notes/importance callbacks and the predictions PNG.
    wall = time.perf_counter() - t_search
    t = study.trials[0]
    ua = t.user_attrs
    return {"wall": wall, "compute": ua["compute_s"], "train": ua["train_s"], "eval": ua["eval_s"],
            "miou": t.value, "once": t_prepare}


class PngPairs(torch.utils.data.Dataset):
    def __init__(self, root: Path, transform=None):
        self.images = sorted((root / "images").glob("*.png"))
        self.root, self.transform = root, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = np.asarray(Image.open(self.images[i]).convert("RGB"))
        mask = np.asarray(Image.open(self.root / "masks" / self.images[i].name))
        if self.transform is not None:
            out = self.transform(image=img, mask=mask)
            img, mask = out["image"], out["mask"]
        x = torch.from_numpy(((img / 255.0 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)).transpose(2, 0, 1))
        return x.float(), torch.from_numpy(mask.astype(np.int64))


def handwritten_trial(data_root: Path, epochs: int) -> dict:
    """What the guide's reference search does per trial, written the usual way."""
    import albumentations as A
    import segmentation_models_pytorch as smp
    import torch.nn.functional as F

    t_start = time.perf_counter()
    compute = train_time = eval_time = 0.0
    torch.manual_seed(0)
    model = smp.create_model("FPN", "resnet18", encoder_weights=None, classes=11)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    train_tf = A.Compose([A.PadIfNeeded(128, 128), A.RandomCrop(128, 128), A.HorizontalFlip()])
    train = torch.utils.data.DataLoader(PngPairs(data_root / "train", train_tf), batch_size=8, shuffle=True)
    val = torch.utils.data.DataLoader(PngPairs(data_root / "val"), batch_size=8)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=11)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    miou = 0.0
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        model.train()
        for x, y in train:
            t0 = time.perf_counter()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            compute += time.perf_counter() - t0
        t_eval = time.perf_counter()
        train_time += t_eval - t_epoch
        model.eval()
        cm = torch.zeros(11, 11, dtype=torch.int64)
        with torch.no_grad():
            for x, y in val:
                h, w = x.shape[-2:]
                xp = F.pad(x, (0, (-w) % 32, 0, (-h) % 32))
                pred = model(xp)[..., :h, :w].argmax(1)
                valid = y != 11
                cm += torch.bincount(y[valid] * 11 + pred[valid], minlength=121).view(11, 11)
        cm = cm.double()
        iou = cm.diag() / (cm.sum(0) + cm.sum(1) - cm.diag())
        miou = float(iou[~iou.isnan()].mean())
        eval_time += time.perf_counter() - t_eval
        trial.report(miou, epoch)
    study.tell(trial, miou)
    return {"wall": time.perf_counter() - t_start, "compute": compute, "train": train_time, "eval": eval_time,
            "miou": miou, "once": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/camvid-small"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--eval-subset", type=float, default=0.3)
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_overhead"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for db in args.workdir.glob("runs/overhead/study.db"):
        db.unlink()
    rows = {"automl trial": automl_trial(args.data, args.epochs, args.eval_subset, args.workdir),
            "hand-written loop": handwritten_trial(args.data, args.epochs)}
    table = Table(title=f"trial overhead on CamVid-small, FPN-resnet18, {args.epochs} epochs, "
                        f"{torch.get_num_threads()} threads")
    for col in ("", "wall s", "fwd/bwd/step s", "outside s", "overhead", "of which eval s", "val mIoU",
                "one-off setup s"):
        table.add_column(col)
    for name, r in rows.items():
        outside = r["wall"] - r["compute"]
        table.add_row(name, f"{r['wall']:.1f}", f"{r['compute']:.1f}", f"{outside:.1f}",
                      f"{outside / r['wall']:.1%}", f"{r['eval']:.1f}", f"{r['miou']:.3f}", f"{r['once']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
