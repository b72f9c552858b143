"""Data at scale: the decoded-data cache (automl.data.cache) against decoding in every process.

    python -m benchmarks.data_scale                       # 2000 images at 1024x512: 4.2 GB decoded
    python -m benchmarks.data_scale --images 200 --height 256 --width 512   # a quick look

It generates a dataset of smooth synthetic street-like scenes (5 classes) in a temporary folder
under --workdir, and prints:

- cold start (decode every PNG + build the cache) and warm start (reuse it), in a fresh process
  each, and their ratio;
- memory of 1 and of 4 worker processes on the same cache, each reading every image once (an
  epoch's reads): peak RSS and peak PSS (proportional set size: a page shared by 4 processes
  counts a quarter in each), summed over the workers, against one worker holding the decoded
  arrays itself (data.cache: off: today's path, every worker one such copy);
- loader throughput (img/s) of 512x512 training crops (the trial's albumentations transform)
  from the cache and from PNG decoding per sample, with 0 and 2 DataLoader workers;
- one epoch of training on the whole dataset in a process whose data segment is limited
  (RLIMIT_DATA, which counts the copy-on-write maps the cache hands out) below the decoded size
  (2.5 GB, what training itself needs, or half the data if more): from the cache it trains;
  with data.cache: off it runs out of memory, as expected.

Disk: the PNGs (about 0.7 GB at the default size: smooth scenes compress well) plus the cache
(the decoded size, 4.2 GB), about 5 GB in all, removed at the end (--keep keeps them). Memory:
the in-memory comparison holds the decoded dataset once (4.2 GB); the rest stays far below it.
Time on the 2-core development machine: mostly the cold start and the generation, a few minutes
each at the default size. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

CLASSES = ("road", "building", "sky", "car", "person")
ROOT = Path(__file__).resolve().parents[1]


def scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth street-like scene: sky, buildings, road, a few cars and people; PNG-friendly."""
    mask = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.55))
    mask[:horizon] = 2
    x = 0
    while x < w:
        bw, top = int(rng.integers(w // 12, w // 5)), int(rng.integers(h // 10, horizon))
        mask[top:horizon, x:x + bw] = 1
        x += bw + int(rng.integers(0, w // 20))
    for cls, n, size in ((3, rng.integers(1, 5), (h // 10, w // 8)), (4, rng.integers(0, 6), (h // 6, w // 40))):
        for _ in range(int(n)):
            y0, x0 = int(rng.integers(horizon, h - size[0])), int(rng.integers(0, w - size[1]))
            mask[y0:y0 + size[0], x0:x0 + size[1]] = cls
    base = np.array([[90, 90, 95], [150, 120, 100], [170, 200, 235], [180, 30, 40], [60, 60, 160]], np.float32)
    shade = np.linspace(0.8, 1.1, h, dtype=np.float32)[:, None, None]
    img = base[mask] * shade + rng.normal(0, 3, (1, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def generate(root: Path, n: int, h: int, w: int) -> float:
    """``root/train/{images,masks}`` with ``n`` pairs; returns the seconds it took."""
    t0 = time.monotonic()
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = scene(rng, h, w)
        Image.fromarray(img).save(root / "train" / "images" / f"{i:05d}.png", compress_level=1)
        Image.fromarray(mask).save(root / "train" / "masks" / f"{i:05d}.png", compress_level=1)
    return time.monotonic() - t0


# Each measurement runs in its own process (python -c): a fresh interpreter, its own page
# tables, its own peak RSS.
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from automl.data.cache import CacheSpec
from automl.data.folder import load_dataset

def pss_kb():
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0

args = json.loads(sys.argv[1])
t0 = time.monotonic()
ds = load_dataset(Path(args["root"]), tuple(args["classes"]), 255, required=("train",),
                  cache=CacheSpec(Path(args["cache"])) if args["cache"] else None)
load_s = time.monotonic() - t0
peak_pss, total = pss_kb(), 0
if args.get("read"):
    split = ds.train
    for i in range(len(split)):
        total += int(np.asarray(split.images[i]).sum(dtype=np.uint64)) + int(np.asarray(split.masks[i]).sum())
        if i % 50 == 0:
            peak_pss = max(peak_pss, pss_kb())
    peak_pss = max(peak_pss, pss_kb())
print(json.dumps({"load_s": load_s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "pss_mb": peak_pss / 1024, "built": ds.cache.built if ds.cache else None,
                  "reused": ds.cache.reused if ds.cache else None, "checksum": total}))
"""


def child(spec: dict, limit_bytes: int | None = None, code: str = CHILD) -> subprocess.Popen:
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=limit)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:  # the exception's line, not a list's tail ("... and N more")
        lines = err.strip().splitlines() or [f"exit {proc.returncode}"]
        named = [ln for ln in lines if "Error" in ln.split(":", 1)[0]]
        return {"error": (named or lines)[-1][:200]}
    return json.loads(out.strip().splitlines()[-1])


def starts(root: Path, cache: Path) -> dict:
    cold = result(child({"root": str(root), "cache": str(cache), "classes": CLASSES}))
    warm = result(child({"root": str(root), "cache": str(cache), "classes": CLASSES}))
    return {"cold_s": cold["load_s"], "warm_s": warm["load_s"], "cold_built": cold["built"],
            "warm_reused": warm["reused"]}


def memory(root: Path, cache: Path) -> dict:
    spec = {"root": str(root), "cache": str(cache), "classes": CLASSES, "read": True}
    one = result(child(spec))
    four = [result(p) for p in [child(spec) for _ in range(4)]]
    plain = result(child({**spec, "cache": None}))
    return {"one": one, "four": four, "in_memory": plain}


LOADER = r"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from torch.utils.data import Dataset as TorchDataset, DataLoader
from automl.data.cache import CacheSpec
from automl.data.decode import read_image, read_raw_mask
from automl.data.folder import load_dataset
from automl.data.loader import TrainCrops, train_loader
from automl.trial.augment import train_transform
from automl.trial_config import AugmentSpec
torch.set_num_threads(1)
args = json.loads(sys.argv[1])
ds = load_dataset(Path(args["root"]), tuple(args["classes"]), 255, required=("train",),
                  cache=CacheSpec(Path(args["cache"])))
split = ds.train
aug = AugmentSpec(crop_height=args["crop"], crop_width=args["crop"], scale_min=0.75, scale_max=1.25)

class Decoding(TrainCrops):
    def __getitem__(self, i):
        stem = split.stems[i]
        img = read_image(Path(args["root"]) / "train" / "images" / f"{stem}.png")
        mask = read_raw_mask(Path(args["root"]) / "train" / "masks" / f"{stem}.png")[1]
        out = self.transform(image=img, mask=mask)
        return torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))), torch.from_numpy(out["mask"].astype(np.int64))

rows = {}
for source in ("cache", "png"):
    for workers in (0, 2):
        loader = train_loader(split, train_transform(aug, 255), batch_size=8, seed=0, num_workers=workers, pin_memory=False)
        if source == "png":
            loader = DataLoader(Decoding(split, train_transform(aug, 255)), batch_size=8, shuffle=True,
                                num_workers=workers, persistent_workers=workers > 0)
        n, t0 = 0, None
        for k, (x, y) in enumerate(loader):
            if k == 2:
                t0, n = time.monotonic(), 0
            n += len(x)
            if k >= 2 + args["batches"]:
                break
        rows[f"{source}, {workers} workers"] = n / (time.monotonic() - t0)
print(json.dumps(rows))
"""

EPOCH = r"""
import json, sys, time
from pathlib import Path
import torch
from automl.data.cache import CacheSpec
from automl.data.folder import load_dataset
from automl.data.loader import train_loader
from automl.trial.augment import train_transform
from automl.trial.model import build_model
from automl.trial_config import AugmentSpec, ModelSpec
torch.set_num_threads(1)
args = json.loads(sys.argv[1])
t0 = time.monotonic()
ds = load_dataset(Path(args["root"]), tuple(args["classes"]), 255, required=("train",),
                  cache=CacheSpec(Path(args["cache"])) if args["cache"] else None)
model = build_model(ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3), len(args["classes"]))
opt = torch.optim.Adam(model.parameters(), 1e-3)
aug = AugmentSpec(crop_height=args["crop"], crop_width=args["crop"])
steps = 0
for x, y in train_loader(ds.train, train_transform(aug, 255), batch_size=8, seed=0, num_workers=0, pin_memory=False):
    loss = torch.nn.functional.cross_entropy(model(x.float() / 255), y)
    opt.zero_grad(); loss.backward(); opt.step(); steps += 1
print(json.dumps({"steps": steps, "images": len(ds.train), "seconds": time.monotonic() - t0}))
"""


def throughput(root: Path, cache: Path, batches: int) -> dict:
    out = result(child({"root": str(root), "cache": str(cache), "classes": CLASSES, "crop": 512,
                        "batches": batches}, code=LOADER))
    return out


# What torch, the model and its training need in the data segment besides the data (the cached
# run peaked at 1.5 GB of VmData at the default size)
TRAINING_DATA_SEGMENT = int(2.5 * 1024 ** 3)


def bigger_than_memory(root: Path, cache: Path, decoded: int) -> dict:
    limit = max(TRAINING_DATA_SEGMENT, decoded // 2)
    spec = {"root": str(root), "cache": str(cache), "classes": CLASSES, "crop": 64}
    return {"limit_gb": limit / 1e9, "decoded_gb": decoded / 1e9,
            "cached": result(child(spec, limit, code=EPOCH)),
            "in_memory": result(child({**spec, "cache": None}, limit, code=EPOCH))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--batches", type=int, default=20, help="loader batches timed per setting")
    ap.add_argument("--workdir", type=Path, default=Path("runs"))
    ap.add_argument("--keep", action="store_true", help="keep the generated data and the cache")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="data_scale_", dir=args.workdir))
    console = Console()
    try:
        root, cache = tmp / "data", tmp / "cache"
        gen_s = generate(root, args.images, args.height, args.width)
        decoded = args.images * args.height * args.width * 4
        png = sum(p.stat().st_size for p in root.rglob("*.png"))
        console.print(f"{args.images} pairs at {args.width}x{args.height}: {decoded / 1e9:.2f} GB decoded, "
                      f"{png / 1e9:.2f} GB of PNG, generated in {gen_s:.0f} s")
        s = starts(root, cache)
        m = memory(root, cache)
        t = throughput(root, cache, args.batches)
        b = bigger_than_memory(root, cache, decoded)
        report(console, args, s, m, t, b)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(console: Console, args, s: dict, m: dict, t: dict, b: dict) -> None:
    table = Table(title=f"cache: start-up ({args.images} pairs)")
    for col in ("cold (decode + build)", "warm (reuse)", "warm / cold"):
        table.add_column(col, justify="right")
    table.add_row(f"{s['cold_s']:.1f} s", f"{s['warm_s']:.2f} s", f"{100 * s['warm_s'] / s['cold_s']:.1f} %")
    console.print(table)

    table = Table(title="memory, each worker reading every image once")
    for col in ("", "peak RSS MB", "peak PSS MB"):
        table.add_column(col, justify="right" if col else "left")
    one, four, plain = m["one"], m["four"], m["in_memory"]
    table.add_row("1 worker, cache", f"{one['rss_mb']:.0f}", f"{one['pss_mb']:.0f}")
    table.add_row("4 workers, cache (sum)", f"{sum(w['rss_mb'] for w in four):.0f}",
                  f"{sum(w['pss_mb'] for w in four):.0f}")
    table.add_row("4 workers / 1 worker", f"{sum(w['rss_mb'] for w in four) / one['rss_mb']:.2f}x",
                  f"{sum(w['pss_mb'] for w in four) / one['pss_mb']:.2f}x")
    table.add_row("1 worker, data.cache: off (today: each worker one copy)", f"{plain['rss_mb']:.0f}",
                  f"{plain['pss_mb']:.0f}")
    # each record is mapped while it is read: a worker holds one image, the page cache the data
    table.add_row("4 workers, cache / 1 worker, data.cache: off",
                  f"{sum(w['rss_mb'] for w in four) / plain['rss_mb']:.2f}x",
                  f"{sum(w['pss_mb'] for w in four) / plain['pss_mb']:.2f}x")
    console.print(table)

    table = Table(title="loader throughput, 512x512 crops, batch 8, one torch thread")
    table.add_column("source, DataLoader workers")
    table.add_column("img/s", justify="right")
    for k, v in (t.items() if "error" not in t else [("error", t["error"])]):
        table.add_row(k, v if isinstance(v, str) else f"{v:.1f}")
    console.print(table)

    table = Table(title=f"one epoch (64x64 crops), data segment limited to {b['limit_gb']:.1f} GB "
                        f"(the dataset decodes to {b['decoded_gb']:.1f} GB, "
                        f"{b['decoded_gb'] / b['limit_gb']:.1f}x the limit)")
    table.add_column("data.cache")
    table.add_column("outcome")
    for name, key in (("on", "cached"), ("off", "in_memory")):
        r = b[key]
        table.add_row(name, r["error"] if "error" in r else
                      f"trained {r['steps']} steps over {r['images']} images in {r['seconds']:.0f} s")
    console.print(table)


if __name__ == "__main__":
    main()
