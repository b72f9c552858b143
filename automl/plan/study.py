"""Plan a study from a dataset's fingerprint: every value ``automl init`` writes, with its reason.

nnU-Net's lesson: derive the experiment from the data instead of asking the user. Each decision
is a :class:`Decision` (the study file field, the value, why); the study file carries the reasons
as comments, and the CLI prints them. Nothing here reads pixels: the fingerprint has them.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.data.fingerprint import Fingerprint
from automl.data.split import carve_count
from automl.errors import ConfigError
from automl.plan.encoding import Encoding, Key, read_encoding
from automl.plan.machine import Machine, detect_machine
from automl.plan.timing import SEARCH_FRACTION, Timing, duration, epochs_text, plan_timing
from automl.terminal import visible
from automl.trial.model import fill_cache_command, imagenet_unavailable
from automl.yaml_file import read_yaml

VAL_FRACTION = 0.2
MIN_VAL_IMAGES = 2  # data.min_val_images' default
BASE_SPACES = {"cpu": "cpu.yaml", "cuda": "default.yaml"}
# CPU crops: between these, half the median short side (CamVid-small's 240x180 → 128, as cpu.yaml)
CPU_CROP = (128, 256)
CUDA_CROP_MAX = 512
MIN_CROP = 32  # SMP's encoders need sides divisible by 32 (augment.crop)
MIN_STEPS_PER_EPOCH = 4
# GPU memory per training sample, per megapixel of crop: FPN-resnet34 at batch 16 of 384² peaked
# at 2.3 GiB in bf16 (benchmarks/README.md, GPU check), ~1 GiB/Mpx; ×3 for default.yaml's larger
# pairs (UPerNet, Segformer, ConvNeXt), and 70 % of the card usable.
GIB_PER_MPX_SAMPLE = 3.0
GPU_USABLE = 0.7


@dataclass(frozen=True)
class Decision:
    field: str  # where it lands: a study file field, or "search space: <field>"
    value: Any
    reason: str


@dataclass
class StudyPlan:
    name: str
    fingerprint: Fingerprint
    encoding: Encoding
    machine: Machine
    timing: Timing
    study_path: Path  # where the study file goes (studies/<name>.yaml)
    space_path: Path  # the derived search space (search_spaces/<name>.yaml)
    base_space: Path
    space: dict  # the derived search space document
    data: dict  # the study file's data section
    settings: dict  # the study file's other planned fields, by dotted name ("budget.trial_epochs")
    decisions: list[Decision] = field(default_factory=list)
    space_changes: list[Decision] = field(default_factory=list)

    @property
    def budget(self) -> str:
        return f"{self.timing.budget_h}h"

    @property
    def run_command(self) -> str:
        return f"automl run {Path(os.path.relpath(self.study_path)).as_posix()} --budget {self.budget}"


def base_space_path(file_name: str, cwd: Path | None = None) -> Path:
    """``search_spaces/<file_name>`` in the working directory, else the one next to the package."""
    here = (cwd or Path.cwd()) / "search_spaces" / file_name
    if here.is_file():
        return here
    shipped = Path(__file__).resolve().parents[2] / "search_spaces" / file_name
    if shipped.is_file():
        return shipped
    raise ConfigError(f"base search space {file_name} not found in {here.parent} nor {shipped.parent}")


def _down32(x: float) -> int:
    return int(x) // 32 * 32


def plan_split(fp: Fingerprint) -> tuple[dict, list[Decision], int, int]:
    """data.val_fraction and the holdout; (fields, decisions, train images, selection images)."""
    splits = fp.splits
    n_train = splits["train"]
    if "val" in splits and "test" in splits:
        reason = (f"val/ ({splits['val']} images) selects (every trial's score, TTA, INT8); test/ ({splits['test']} "
                  "images) is the untouched holdout, scored once by the shipped model")
        return {}, [Decision("data.val_fraction", None, reason)], n_train, splits["val"]
    n_val = carve_count(n_train, VAL_FRACTION, MIN_VAL_IMAGES)
    where = ("the folder is flat: all of it is train" if fp.layout == "flat" else
             "there is no val/ folder" if "val" not in splits else
             f"val/ ({splits['val']} images) is kept as the untouched holdout, as studies/camvid.yaml does")
    holdout = ("val/" if "val" in splits else "test/" if "test" in splits else None)
    reason = (f"a seeded {VAL_FRACTION * 100:.0f} % of train ({n_val} of {n_train} images) is the selection split: "
              f"{where}; the same images in every worker, restart and the final (automl/data/split.py)")
    if n_val > round(VAL_FRACTION * n_train):
        reason += f"; {n_val} is the floor for a small set (data.min_val_images = {MIN_VAL_IMAGES})"
    reason += (f". Untouched holdout: {holdout}, scored once after every decision" if holdout else
               ". There is NO untouched holdout: every score is on images the search selected on; add a test/ "
               "folder for an honest final figure")
    return ({"val_fraction": VAL_FRACTION, "split_seed": 0}, [Decision("data.val_fraction", VAL_FRACTION, reason)],
            n_train - n_val, n_val)


def plan_crop(fp: Fingerprint, machine: Machine) -> Decision:
    h, w = fp.sizes.median
    short = min(h, w)
    if machine.cuda:
        crop = max(MIN_CROP, min(CUDA_CROP_MAX, _down32(short)))
        why = f"the median short side ({short} px) rounded down to a multiple of 32, at most {CUDA_CROP_MAX} on CUDA"
    else:
        crop = max(MIN_CROP, min(_down32(short), max(CPU_CROP[0], min(CPU_CROP[1], _down32(short / 2)))))
        why = (f"half the median short side ({short} px), a multiple of 32 within {CPU_CROP[0]}..{CPU_CROP[1]} on a "
               f"CPU and not above the short side")
    if short < MIN_CROP:
        why += f"; the images are smaller than {MIN_CROP} px, the smallest crop SMP's encoders take: they are padded"
    return Decision("search space: augment.crop", [crop, crop], f"median image {w}x{h}: {why}")


def plan_batch(base: dict, n_train: int, crop: int, machine: Machine) -> tuple[list[int], int, str]:
    """(batch size choices, the baseline's, why): the base space's choices that fit the data (a
    few steps an epoch) and, on CUDA, the GPU's memory."""
    param = base["batch_size"]  # the base spaces give choices (or one value)
    choices = sorted(param["choices"]) if isinstance(param, dict) else [int(param)]
    limits = [(n_train // MIN_STEPS_PER_EPOCH, f"{n_train} train images: at most {n_train // MIN_STEPS_PER_EPOCH} "
                                                f"per batch keeps {MIN_STEPS_PER_EPOCH}+ steps an epoch")]
    if machine.cuda:
        fits = int(GPU_USABLE * machine.gpu_gib / (GIB_PER_MPX_SAMPLE * crop * crop / 1e6))
        limits.append((fits, f"{machine.gpu_gib:.0f} GiB GPU: about {fits} samples of {crop}² fit (an estimate: "
                             f"{GIB_PER_MPX_SAMPLE:g} GiB per megapixel per sample for default.yaml's larger models, "
                             f"{GPU_USABLE * 100:.0f} % of the memory)"))
    limit = min(n for n, _ in limits)
    kept = [b for b in choices if b <= limit]
    why = [text for n, text in limits if any(b > n for b in choices)]
    if not kept:
        kept = [max(2, 2 ** int(math.log2(max(limit, 1))))]
        why.append(f"none of the base choices {choices} fits: {kept[0]}, the smallest batch BatchNorm trains with")
    baseline = base.get("baseline", {}).get("batch_size", kept[-1])
    baseline = max([b for b in kept if b <= baseline] or [kept[0]])
    return kept, baseline, "; ".join(why) or f"the base space's choices {choices} fit"


def plan_weights(encoders: list[str], unavailable=imagenet_unavailable) -> tuple[str | None, str]:
    """(encoder_weights, why): ImageNet when every encoder's weights are cached here (nothing is
    downloaded to find out), else random init, said plainly with how to get them."""
    missing = {e: why for e in encoders if (why := unavailable(e, probe=False)) is not None}
    if not missing:
        return "imagenet", (f"ImageNet weights for {', '.join(encoders)} are in the cache here: pretrained "
                                      "encoders learn far faster from few images")
    cached = [e for e in encoders if e not in missing]
    fill = fill_cache_command(list(missing))
    return None, ("random init (encoder_weights: null): ImageNet weights for "
                  f"{', '.join(missing)} are not in the cache here and init downloads nothing"
                  + (f" (cached: {', '.join(cached)}; keeping only those in model.encoders would allow imagenet)"
                     if cached else "")
                  + f". To use them, run `{fill}` where there is internet, copy the Hugging Face cache here, then set "
                  "model.encoder_weights: imagenet (a search checks at start-up that it can get them)")


def plan_settings(timing: Timing, n_val: int) -> tuple[dict, list[Decision]]:
    """The budget, eval, pruner and run fields, by dotted name, and why."""
    min_final = max(1, min(40, timing.final_epochs // 2))
    subset = 0.3 if n_val >= 50 else 1.0
    rung = max(1, timing.trial_epochs // 3)
    share = f"{SEARCH_FRACTION * 100:.0f} %"
    decided = [
        ("budget.n_trials", 200,
         "a cap only: the time decides (budget.timeout for `automl search`, --budget for `automl run`)"),
        ("budget.timeout", f"{round(timing.search_s / 60)}m",
         f"the search's share ({share}) of the suggested {timing.budget_h} h, for `automl search` alone"),
        ("budget.trial_epochs", timing.trial_epochs, "; ".join(timing.reasons[:-1])),
        ("budget.trial_schedule_epochs", timing.schedule_epochs,
         "the LR schedule of a trial spans this many epochs and it stops at trial_epochs, as studies/camvid.yaml"),
        ("budget.trial_time_limit", f"{timing.trial_time_limit_s // 60}m",
         f"3× a trial's estimated {duration(timing.trial_s)}, at least 10 min"),
        ("eval.subset", subset,
         "intermediate epochs score a fixed 30 % of the selection split (the last all of it)" if subset < 1 else
         f"the selection split is small ({n_val} images): every scored epoch uses all of it"),
        ("pruner", {"type": "hyperband", "min_resource": rung, "reduction_factor": 3},
         f"Hyperband, first rung at epoch {rung} (a third of a trial), as studies/camvid.yaml"),
        ("run.search_fraction", SEARCH_FRACTION,
         f"`automl run` gives the search {share} of the budget and the final retrain the rest: on CamVid-small the "
         "search found its winner early and the final's extra epochs paid (studies/camvid.yaml)"),
        ("run.min_final_epochs", min_final,
         "the search stops early rather than leave the final retrain fewer epochs (by the estimate it gets "
         f"{epochs_text(timing.final_epochs)})"),
    ]
    return {k: v for k, v, _ in decided}, [Decision(k, v, r) for k, v, r in decided]


def plan_study(fp: Fingerprint, *, name: str, device: str | Machine = "auto", void: list[Key] | None = None,
               root_dir: Path | None = None, unavailable=imagenet_unavailable) -> StudyPlan:
    """Every value of a study on ``fp``'s folder, each with its reason. ``root_dir``: where
    studies/ and search_spaces/ are (default: the working directory); ``unavailable``: the
    ImageNet weights check (tests pass their own)."""
    root_dir = root_dir or Path.cwd()
    machine = device if isinstance(device, Machine) else detect_machine(device)
    encoding = read_encoding(fp, void)
    split_fields, split_decisions, n_train, n_val = plan_split(fp)
    base_path = base_space_path(BASE_SPACES[machine.device], root_dir)
    space_path = root_dir / "search_spaces" / f"{name}.yaml"
    if space_path.resolve() == base_path.resolve():
        raise ConfigError(visible(f"--name {name}: the study's search space would overwrite the base "
                                  f"{base_path.name}; choose another name"))
    base = read_yaml(base_path)
    space = copy.deepcopy(base)

    crop = plan_crop(fp, machine)
    space["augment"]["crop"] = crop.value
    choices, baseline_batch, batch_why = plan_batch(base, n_train, crop.value[0], machine)
    space["batch_size"] = {"choices": choices} if len(choices) > 1 else choices[0]
    space.setdefault("baseline", {})["batch_size"] = baseline_batch
    weights, weights_why = plan_weights(list(base["model"]["encoders"]), unavailable)
    space["model"]["encoder_weights"] = weights
    changes = [Decision(f"search space: {k}", v, r) for k, v, r in (
        ("augment.crop", crop.value, crop.reason),
        ("batch_size", space["batch_size"], batch_why + f"; the baseline trains at {baseline_batch}"),
        ("model.encoder_weights", weights, weights_why))]

    timing = plan_timing(cuda=machine.cuda, n_train=n_train, n_val=n_val, crop=crop.value[0], batch=baseline_batch,
                         image_hw=fp.sizes.median)
    data = {"root": fp.root, **({"layout": "flat"} if fp.layout == "flat" else {}),
            "classes": list(encoding.classes), "ignore_index": encoding.ignore_index,
            **({"label_map": encoding.label_map} if encoding.label_map else {}), **split_fields}
    settings, setting_decisions = plan_settings(timing, n_val)
    decisions = [
        Decision("data.layout", fp.layout, "images/ + masks/ at the top: one flat folder, all of it train"
                 if fp.layout == "flat" else f"{'/, '.join(fp.splits)}/ folders, each with images/ and masks/"),
        Decision("data.classes", list(encoding.classes), "; ".join(encoding.reasons)),
        *split_decisions,
        Decision("device", machine.device, machine.why),
        Decision("search_space", space_path.name, f"{base_path.name} (the base for {machine.device.upper()}) with "
                 "the crop, batch size and encoder weights planned here"),
        *changes,
        *setting_decisions,
        Decision("--budget", f"{timing.budget_h}h", timing.reasons[-1]),
    ]
    settings["device"] = machine.device
    return StudyPlan(name=name, fingerprint=fp, encoding=encoding, machine=machine, timing=timing,
                     study_path=root_dir / "studies" / f"{name}.yaml", space_path=space_path, base_space=base_path,
                     space=space, data=data, settings=settings, decisions=decisions, space_changes=changes)

