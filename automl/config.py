"""The study file (``studies/*.yaml``): data, search space, budget, storage, final options.

Validated with pydantic at the edge. Every error names the file and the field.
Relative paths inside a study file are resolved against the study file's folder;
the run folder (``runs/<name>/``) is relative to the working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from automl.errors import ConfigError, DataError
from automl.pruners import PRUNERS
from automl.terminal import visible
from automl.yaml_file import format_validation_error, read_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float | None:
    """'90', '90s', '15m', '1.5h', '1d' or a number of seconds → seconds."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '90s', '15m', '8h')")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticData(_Section):
    """A deterministic synthetic dataset the package generates on first use."""

    n_train: int = Field(240, ge=2)
    n_val: int = Field(60, ge=1)
    n_test: int = Field(0, ge=0)
    height: int = Field(80, ge=16)
    width: int = Field(112, ge=16)
    seed: int = 0


# A colour in a colour-coded mask, as a study file writes it: "#rrggbb" (read in any case, kept in
# lower case). Declared once: the label map, its decoder and the bundle's note all use these.
COLOUR_FORMAT = "#rrggbb"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
RAW_VALUE_MAX = 65535  # single-channel masks are 8- or 16-bit


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' (any case) → (r, g, b); ValueError otherwise."""
    if not isinstance(text, str) or not _COLOUR.match(text):
        raise ValueError(f"{text!r} is not a {COLOUR_FORMAT} colour")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def colour_text(rgb) -> str:
    """(r, g, b) → '#rrggbb'."""
    r, g, b = (int(c) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _raw_value(v: Any, field: str) -> int:
    """A raw mask value: an int, or a string of digits (JSON writes mapping keys as strings)."""
    if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, str) and v.strip().isdigit()):
        raise ValueError(f"{field}: {v!r} is not a raw mask value (an integer 0..{RAW_VALUE_MAX})")
    n = int(v)
    if not 0 <= n <= RAW_VALUE_MAX:
        raise ValueError(f"{field}: raw value {n} is outside 0..{RAW_VALUE_MAX} (8- or 16-bit masks)")
    return n


class LabelMap(_Section):
    """How raw mask values become class indices, applied when the masks are decoded (nothing on
    disk is rewritten). ``values``: single-channel masks (8- or 16-bit), raw value → class index;
    ``colors``: RGB colour-coded masks, "#rrggbb" → class index. ``void``: raw values (or colours)
    read as ``data.ignore_index``. Exactly one of ``values``/``colors``."""

    values: dict[Any, int] | None = None
    colors: dict[Any, int] | None = None
    void: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> LabelMap:
        if (self.values is None) == (self.colors is None):
            raise ValueError("data.label_map: give exactly one of `values` (single-channel masks: raw value → "
                             f"class index) or `colors` (RGB masks: \"{COLOUR_FORMAT}\" → class index)")
        kind = self.kind
        field = f"data.label_map.{kind}"
        mapped: dict = {}
        for key, index in (self.values or self.colors).items():
            norm = _raw_value(key, field) if kind == "values" else _colour_key(key, field)
            if norm in mapped:
                raise ValueError(f"{field}: {key!r} is given twice (as {mapped[norm][0]!r} too)")
            if isinstance(index, bool) or index < 0:
                raise ValueError(f"{field}: {key!r} → {index!r} is not a class index (0 or more)")
            mapped[norm] = (key, index)
        void = [_raw_value(v, "data.label_map.void") if kind == "values" else _colour_key(v, "data.label_map.void")
                for v in self.void]
        for v in void:
            if v in mapped:
                raise ValueError(f"data.label_map.void: {v!r} is also mapped to class {mapped[v][1]} in {field}; "
                                 "keep it in one of them")
        if len(set(void)) != len(void):
            raise ValueError("data.label_map.void: an entry is given twice")
        setattr(self, kind, {k: index for k, (_, index) in mapped.items()})
        self.void = void
        return self

    @property
    def kind(self) -> Literal["values", "colors"]:
        return "values" if self.values is not None else "colors"

    @property
    def mapping(self) -> dict:
        """Raw value (int) or colour ("#rrggbb") → class index."""
        return self.values if self.values is not None else self.colors

    def class_problems(self, classes: list[str]) -> list[str]:
        """Class indices that are not classes, and classes without a raw value or colour."""
        field, n = f"data.label_map.{self.kind}", len(classes)
        out = [f"{field}: {key!r} → {index} is not a class index (0..{n - 1}, data.classes); list void entries "
               "in data.label_map.void" for key, index in self.mapping.items() if index >= n]
        have = set(self.mapping.values())
        out += [f"{field}: class {name!r} ({i}) has no raw {'value' if self.kind == 'values' else 'colour'}; "
                "every class in data.classes needs one" for i, name in enumerate(classes) if i not in have]
        return out


def _colour_key(v: Any, field: str) -> str:
    try:
        return colour_text(parse_colour(v))
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


class DataSection(_Section):
    root: Path | None = None
    synthetic: SyntheticData | None = None
    # folders: root/{train,val[,test]}/{images,masks}; flat: root/{images,masks}, all of it train
    # (data.val_fraction then carves the selection split).
    layout: Literal["folders", "flat"] = "folders"
    classes: list[str] = Field(min_length=2)
    ignore_index: int = Field(255, ge=0, le=255)
    pad_divisor: int = Field(32, ge=1)
    # Carve the selection split (every trial's score, the TTA and INT8 decisions) from train/,
    # seeded: the folder's own val/ (or test/ when present) then stays untouched until the
    # shipped model is scored on it once. Required for a folder without val/. Unset: val/ selects.
    val_fraction: float | None = Field(None, gt=0, le=0.9)
    split_seed: int = 0
    # A small train/ still gives a selection split of at least this many images.
    min_val_images: int = Field(2, ge=1)
    # The decoded dataset, cached on local disk once per machine and memory-mapped by every process
    # (automl.data.cache). auto: on CUDA always (DataLoader workers read the maps), on a CPU from
    # automl.study.runner.CACHE_FROM_GB of decoded data (below it each process keeps its own
    # arrays: a small set decodes in seconds); on/off force it.
    cache: Literal["auto", "on", "off"] = "auto"
    cache_dir: Path | None = None  # default: <runs root>/data_cache; relative paths: to the study file
    # How raw mask values (or colours) become class indices; unset: masks hold class indices.
    label_map: LabelMap | None = None

    @model_validator(mode="after")
    def _source(self) -> DataSection:
        if self.root is None and self.synthetic is None:
            raise ValueError("data: give `root` (a folder of images and masks) or `synthetic`")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("data.classes: class names must be unique")
        if self.ignore_index < len(self.classes):
            raise ValueError(f"data.ignore_index {self.ignore_index} collides with a class index "
                             f"(0..{len(self.classes) - 1})")
        if self.layout == "flat" and self.val_fraction is None:
            raise ValueError("data.val_fraction: required with data.layout flat (root/images and root/masks are all "
                             "train); e.g. 0.2 carves a seeded selection split from them")
        if self.layout == "flat" and self.root is None:
            raise ValueError("data.layout flat: synthetic data is written as folders; remove data.layout")
        problems = self.label_map.class_problems(self.classes) if self.label_map is not None else []
        if problems:
            raise ValueError("; ".join(problems))
        return self


class BudgetSection(_Section):
    n_trials: int = Field(ge=1, description="total finished trials for the study, across restarts")
    timeout: Duration | None = None
    trial_epochs: int = Field(4, ge=1)
    trial_time_limit: Duration | None = None
    max_consecutive_failures: int = Field(5, ge=1)
    # Stop searching once this many trials in a row (completed or pruned) have not beaten the
    # best one. Off by default. Under `automl run` the time it saves goes to the final retrain.
    patience: int | None = Field(None, ge=1, description="finished trials without a new best before the search stops")
    # A trial's LR schedule spans this many epochs but it trains only trial_epochs: each trial is
    # the start of a longer run, as Hyperband's rungs assume. On CamVid-small this ranked configs
    # closer to longer training than short trials with their own schedule (benchmarks/README.md,
    # rank correlation). Off by default: the schedule spans trial_epochs.
    trial_schedule_epochs: int | None = Field(None, ge=1)
    # How trials are compared. "epochs": each trains trial_epochs epochs. "time": each trains for
    # the time the baseline takes for trial_epochs epochs (its schedule spanning
    # trial_schedule_epochs of them), so a config 1.6x slower per epoch trains ~1.6x fewer epochs
    # and is judged at equal training time, as the final retrain of `automl run` will train it.
    # Unset: time under `automl run` (a model trained for a time), epochs under `automl search`.
    equal: Literal["time", "epochs"] | None = None

    @model_validator(mode="after")
    def _schedule_span(self) -> BudgetSection:
        if self.trial_schedule_epochs is not None and self.trial_schedule_epochs < self.trial_epochs:
            raise ValueError(f"budget.trial_schedule_epochs ({self.trial_schedule_epochs}) must be at least "
                             f"trial_epochs ({self.trial_epochs})")
        return self


class EvalSection(_Section):
    batch_size: int = Field(8, ge=1)
    # Intermediate epochs are scored on a fixed val subset (cheap, same for every trial so the
    # pruner compares like with like); the last epoch always uses the full val split.
    subset: float = Field(1.0, gt=0, le=1)
    # "pruner": score only the epochs the pruner reads (Hyperband/SH rungs) and the last one;
    # "every": a val score after every epoch (fuller curves in the dashboard, more overhead).
    epochs: Literal["pruner", "every"] = "pruner"


class PrunerSection(_Section):
    type: Literal[tuple(PRUNERS)] = "hyperband"  # type: ignore[valid-type]
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    n_startup_trials: int = Field(3, ge=0, description="median pruner only")


class SamplerSection(_Section):
    seed: int = 0
    n_startup_trials: int = Field(8, ge=0)


class StorageSection(_Section):
    url: str | None = None  # default sqlite:///runs/<name>/study.db; may be "env:VAR_NAME"
    heartbeat_interval: int = Field(30, ge=1)
    grace_period: int = Field(120, ge=2)
    max_retries: int = Field(2, ge=0)


class TTASection(_Section):
    hflip: bool = True
    vflip: bool = False
    scales: list[float] = Field(default_factory=lambda: [1.0])
    min_gain: float = Field(0.002, ge=0)


class Int8Section(_Section):
    enabled: bool = True
    calibration_images: int = Field(32, ge=1)
    max_drop: float = Field(0.005, ge=0)


class WeightAverageSection(_Section):
    """An EMA of the final retrain's weights over its last ``horizon`` of steps, kept only when it
    scores at least ``min_gain`` above the trained weights on the selection split. Off:
    benchmarks.weight_average found no gain on the untouched split (benchmarks/README.md)."""

    enabled: bool = False
    horizon: float = Field(0.1, gt=0, le=1)
    min_gain: float = Field(0.0, ge=0)


class FastestOnFront(_Section):
    """The fastest trial (batch-1 latency) whose val mIoU is within ``max_gap`` of the best."""

    pareto: Literal["fastest"]
    max_gap: float = Field(0.03, ge=0, lt=1, description="val mIoU below the best trial's, absolute")


class LatencyLimit(_Section):
    max_latency_ms: float = Field(gt=0)


class BestUnder(_Section):
    """The best trial whose batch-1 latency (measured before it trained) meets the limit."""

    best_under: LatencyLimit


# The KD terms a student may learn from (automl.trial.distill.KD_METHODS holds each one's loss and
# its defaults); named here, not imported, so that reading a study file needs no torch.
KD_METHOD_NAMES = ("logits", "cwd")


class DistillSection(_Section):
    """``final.distill``: after the final retrain, distil the retrained model (the teacher) into a
    smaller student, which ships next to it in the bundle (``bundle/student/``).

    ``student``: ``ARCH/ENCODER`` (e.g. ``Linknet/tu-mobilenetv3_small_100``), ``{pareto: fastest}`` or
    ``{best_under: {max_latency_ms: N}}``; the student keeps its own trial's recipe when the search
    trained that model, else the teacher's. ``weight``/``temperature`` unset: the method's
    defaults (automl.trial.distill). ``epochs`` unset: the teacher's final epochs (under `automl
    run --budget`, the first plan: the students' time sets their count).

    ``lr``: the student's learning rate, instead of its recipe's (its trial's, or the teacher's):
    a small randomly initialised student may need another LR than the teacher it copies
    (benchmarks/README.md, distillation, measured this).

    ``share``: under `automl run --budget`, the students' part of the final's time (after the
    search and the two reserves for export, INT8 and latency, one per model); the teacher
    retrains in the rest. A third by default: every later step leans on the teacher (it is the
    KD target and the fallback default), and two student runs (distilled, then alone for the
    comparison) at a fraction of its epoch time each still get many epochs."""

    student: str | FastestOnFront | BestUnder
    method: Literal["logits", "cwd"] = "logits"
    weight: float | None = Field(None, gt=0)
    temperature: float | None = Field(None, gt=0)
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    share: float = Field(1 / 3, gt=0, lt=1)

    @field_validator("student")
    @classmethod
    def _student(cls, value):
        return check_student_pair(value) if isinstance(value, str) else value


def check_student_pair(text: str) -> str:
    """``ARCH/ENCODER`` with SMP's canonical architecture name; a ValueError naming what is wrong."""
    from automl import registry

    arch, sep, encoder = text.partition("/")
    if not sep or not arch or not encoder:
        raise ValueError(f"student {text!r}: write ARCH/ENCODER (e.g. Linknet/tu-mobilenetv3_small_100), "
                         "{pareto: fastest} or {best_under: {max_latency_ms: N}}")
    return f"{registry.canonical_architecture(arch)}/{registry.check_encoder(encoder)}"


class FinalSection(_Section):
    epochs: int = Field(40, ge=1)
    # The retrain scores val at this many evenly spaced epochs (the last on all of val): enough for
    # the report's curve, without a val pass after every epoch.
    eval_points: int = Field(4, ge=1)
    # Retrain on train + the selection split once the config is fixed (never on the holdout); the
    # TTA and INT8 decisions then see images the model trained on. Unset: true under `automl run`
    # (the default recipe it is measured against trains on every training image), else false.
    train_on_trainval: bool | None = None
    tta: TTASection = Field(default_factory=TTASection)
    int8: Int8Section = Field(default_factory=Int8Section)
    ema: WeightAverageSection = Field(default_factory=WeightAverageSection)
    latency_runs: int = Field(30, ge=5)
    # Fixed so latencies compare across runs and machines; the report states it with the CPU model.
    latency_threads: int = Field(2, ge=1)
    # Run the final stage (retrain, TTA, INT8, bundle) when `automl search` ends.
    after_search: bool = False
    # Distil the retrained model into a smaller student (off unless given; see DistillSection).
    distill: DistillSection | None = None

    @property
    def trainval(self) -> bool:
        """Whether the retrain uses train + the selection split (``train_on_trainval``, unset: no)."""
        return bool(self.train_on_trainval)


class ConstraintsSection(_Section):
    """Hard limits, measured before a trial trains (batch 1, the run's device, the study's input
    size). Configurations over a limit are never trained; the best trial is the best feasible one."""

    max_latency_ms: float | None = Field(None, gt=0)
    max_params_m: float | None = Field(None, gt=0)


class ParetoPick(_Section):
    """How the final stage picks one trial from a Pareto front."""

    rule: Literal["knee", "best_under_limit"] = "knee"
    max_latency_ms: float | None = Field(None, gt=0)
    max_params_m: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _limit(self) -> ParetoPick:
        if self.rule == "best_under_limit" and self.max_latency_ms is None and self.max_params_m is None:
            raise ValueError("pareto_pick: rule best_under_limit needs max_latency_ms or max_params_m")
        return self


class SelectionSection(_Section):
    # Single objective only: the baseline stays unless a challenger beats it by more than the noise
    # between seeds, measured by a second run of the baseline (automl.study.selection.decide).
    incumbent: bool = Field(True, description="keep the baseline unless a trial beats it by more than seed noise")


class StageSection(_Section):
    """One stage of a staged search: search these parameters, keep the rest at their best-known
    values (earlier stages' winners, else the search space's baseline)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    search: list[str] = Field(min_length=1, description="parameter names or glob patterns, e.g. 'aug.*'")
    n_trials: int = Field(ge=1)
    timeout: Duration | None = None


class RunSection(_Section):
    """How `automl run --budget T` splits one budget between the search and the final retrain."""

    search_fraction: float = Field(0.5, gt=0, lt=1, description="share of the budget for the search")
    # Kept for ONNX export, TTA and INT8 decisions and latency measurement after the retrain.
    # Unset: priced from the selected trial's val pass and latency (automl.overnight.reserve_seconds).
    final_reserve: Duration | None = None
    # The search ends early (it starts no trial it cannot finish in time) so that the final retrain
    # of the current best gets at least this many epochs.
    min_final_epochs: int = Field(1, ge=1)
    # A search that cannot run this many trials in its share does not pay back its time: once the
    # baseline has measured a trial's length, `automl run` skips the search and retrains the
    # baseline with the whole budget. 12: TPE's 8 random start-up trials (studies/camvid.yaml), the
    # baseline, its seed probe and a few guided trials. At T = 10 min on a 512x512 dataset the
    # search's 2.4-2.8 minutes ran 4-8 trials and cost the final more epochs than any config gained
    # (benchmarks/README.md). 1: always search.
    min_search_trials: int = Field(12, ge=1)
    # Final epochs are priced at the trial's measured time per epoch times (1 + this margin): late
    # epochs of a long retrain run slower than a short trial's (a warm machine, a fuller page
    # cache), and a run that overshoots its budget breaks the user's night (benchmarks/README.md).
    epoch_margin: float = Field(0.1, ge=0, le=1)
    # Work after the retrain that the shipped model does not need (INT8, the holdout's reference
    # scores; automl.final.extras) is done only when its price is at most this share of the budget:
    # a short run spends it on the retrain, where the curve is still steep (benchmarks/README.md,
    # em-like); the report gives the `automl final --reuse-model` command that adds it. 1: always.
    extras_share: float = Field(0.02, ge=0, le=1)



class StudyFile(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataSection
    search_space: Path
    # One objective (val mIoU, pruned) or a Pareto search against latency and/or size (not pruned:
    # Optuna cannot prune multi-objective trials).
    objectives: list[Literal["val_miou", "latency_ms", "params_m"]] = Field(default_factory=lambda: ["val_miou"])
    constraints: ConstraintsSection = Field(default_factory=ConstraintsSection)
    pareto_pick: ParetoPick = Field(default_factory=ParetoPick)
    selection: SelectionSection = Field(default_factory=SelectionSection)
    stages: list[StageSection] = Field(default_factory=list)
    budget: BudgetSection
    eval: EvalSection = Field(default_factory=EvalSection)
    pruner: PrunerSection = Field(default_factory=PrunerSection)
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers per trial; unset: 0 on a CPU, on "
                                    "CUDA min(8, the trial process's CPU threads)")
    final: FinalSection = Field(default_factory=FinalSection)
    run: RunSection = Field(default_factory=RunSection)
    # Where runs/<name>/ lives; not part of the file, set by the loader.
    runs_root: Path = Field(Path("runs"), exclude=True)
    # Where data.root came from ("data.root in studies/x.yaml", "--data"), for the error when the
    # folder is missing; set by the loader.
    data_origin: str = Field("data.root", exclude=True)

    @model_validator(mode="after")
    def _objectives(self) -> StudyFile:
        if not self.objectives or self.objectives[0] != "val_miou" or len(set(self.objectives)) != len(self.objectives):
            raise ValueError("objectives: start with val_miou, then optionally latency_ms and/or params_m, "
                             "each once")
        if self.budget.patience is not None and len(self.objectives) > 1:
            raise ValueError("budget.patience: a Pareto search has no single best to wait on; remove it or "
                             "search val_miou alone")
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ValueError("stages: stage names must be unique")
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def run_dir(self) -> Path:
        return self.runs_root / self.name

    @property
    def cache_dir(self) -> Path:
        """Where the decoded-data cache lives (``data.cache_dir``, else under the runs root, shared
        by every study of the machine)."""
        return self.data.cache_dir or self.runs_root / "data_cache"

    @property
    def data_root(self) -> Path:
        """The dataset folder: ``data.root``, which must exist (the error names the field or flag it
        came from), or the synthetic data's folder under the run folder."""
        if self.data.root is None:
            return self.run_dir / "data"
        check_root(self.data.root, self.data_origin)
        return self.data.root


def load_study_file(path: str | Path, *, overrides: dict | None = None,
                    runs_root: Path = Path("runs")) -> StudyFile:
    """Read and validate a study file. ``overrides`` are dotted keys from the CLI."""
    path = Path(path)
    doc = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = doc
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        study = StudyFile.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(format_validation_error(str(path), err, StudyFile)) from None
    base = path.parent
    updates: dict[str, Any] = {"search_space": _resolve(base, study.search_space), "runs_root": runs_root}
    if (overrides or {}).get("data.root"):
        updates["data_origin"] = "--data"
    elif study.data.root is not None:
        study.data.root = _resolve(base, study.data.root)
        updates["data_origin"] = f"data.root in {path}"
    if study.data.cache_dir is not None:
        study.data.cache_dir = _resolve(base, study.data.cache_dir)
    return study.model_copy(update=updates)


def _resolve(base: Path, p: Path) -> Path:
    p = p.expanduser()
    return p if p.is_absolute() else (base / p)


def check_root(root: Path, origin: str = "") -> None:
    """A DataError naming the folder, and where it came from, when it is not a folder."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "not found"
        raise DataError(visible(f"data folder {what}: {root}" + (f" (from {origin})" if origin else "")))
