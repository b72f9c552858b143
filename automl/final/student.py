"""Which model the teacher is distilled into, and with which recipe (``final.distill.student``).

- ``ARCH/ENCODER``: that model. If the search trained it, the best such trial's recipe
  (optimizer, LR, schedule, augmentation, loss weights, batch size) comes with it; else the
  teacher's recipe with the model swapped.
- ``{pareto: fastest}``: among the completed trials whose val mIoU is within ``max_gap`` of the
  best, the one with the lowest batch-1 latency (measured before it trained), with its recipe.
- ``{best_under: {max_latency_ms: N}}``: the best trial whose latency meets N, with its recipe.

``final.distill.lr`` replaces the recipe's learning rate.

Every refusal comes before any training and names ``final.distill.student``: a pair that does
not build or map the input size back (:func:`automl.trial.compat.pair_problem`), a rule no trial
meets, a student that is the teacher's own model, or encoder weights this machine cannot get.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import BestUnder, DistillSection, FastestOnFront, check_student_pair
from automl.errors import ConfigError
from automl.trial.compat import pair_problem
from automl.trial.model import check_encoder_weights
from automl.trial_config import ModelSpec, TrialConfig

FIELD = "final.distill.student"


@dataclass(frozen=True)
class Student:
    cfg: TrialConfig      # the student's recipe, at the teacher's final epochs and seed
    rule: str             # how it was chosen, for the report
    trial: int | None     # the trial whose recipe it keeps (None: the teacher's recipe)

    def as_dict(self) -> dict:
        m = self.cfg.model
        return {"model": f"{m.arch}/{m.encoder}", "rule": self.rule, "recipe_from_trial": self.trial,
                "config": self.cfg.summary()}


def _trial_config(t: FrozenTrial) -> TrialConfig | None:
    raw = t.user_attrs.get("config")
    return None if raw is None else TrialConfig.from_dict(raw)


def _candidates(study: optuna.Study) -> list[tuple[FrozenTrial, TrialConfig]]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cfg = _trial_config(t)
        if cfg is not None and t.values:
            out.append((t, cfg))
    return out


def _pair(cfg: TrialConfig) -> str:
    return f"{cfg.model.arch}/{cfg.model.encoder}"


def _by_rule(spec: FastestOnFront | BestUnder, found: list[tuple[FrozenTrial, TrialConfig]],
             teacher_pair: str) -> tuple[FrozenTrial, TrialConfig, str]:
    timed = [(t, c) for t, c in found if t.user_attrs.get("latency_ms") is not None]
    if not timed:
        raise ConfigError(f"{FIELD}: no completed trial has a measured latency to choose a student by")
    if isinstance(spec, FastestOnFront):
        best = max(t.values[0] for t, _ in timed)
        near = [(t, c) for t, c in timed if t.values[0] >= best - spec.max_gap and _pair(c) != teacher_pair]
        if not near:
            raise ConfigError(f"{FIELD}: no trial of another model than the teacher's ({teacher_pair}) is within "
                              f"{spec.max_gap} val mIoU of the best ({best:.4f}); raise max_gap or name the student "
                              "(ARCH/ENCODER)")
        t, c = min(near, key=lambda tc: tc[0].user_attrs["latency_ms"])
        return t, c, (f"pareto fastest: the lowest latency ({t.user_attrs['latency_ms']:.2f} ms) within "
                      f"{spec.max_gap} val mIoU of the best trial")
    limit = spec.best_under.max_latency_ms
    under = [(t, c) for t, c in timed if t.user_attrs["latency_ms"] <= limit and _pair(c) != teacher_pair]
    if not under:
        fastest = min(t.user_attrs["latency_ms"] for t, _ in timed)
        raise ConfigError(f"{FIELD}: no trial of another model than the teacher's meets max_latency_ms {limit:g} "
                          f"(the fastest trial took {fastest:.2f} ms); raise the limit or name the student")
    t, c = max(under, key=lambda tc: tc[0].values[0])
    return t, c, f"best under {limit:g} ms: the best trial whose latency ({t.user_attrs['latency_ms']:.2f} ms) meets it"


def choose_student(spec: DistillSection, study: optuna.Study, teacher: TrialConfig,
                   input_size: tuple[int, int], override: str | None = None) -> Student:
    """The student for ``spec`` (or the ``--student ARCH/ENCODER`` override), checked to build at
    ``input_size``; its recipe at the teacher's epochs (``spec.epochs`` if set) and seed."""
    choice = spec.student if override is None else _checked(override)
    teacher_pair = _pair(teacher)
    found = _candidates(study)
    if isinstance(choice, str):
        if choice == teacher_pair:
            raise ConfigError(f"{FIELD}: {choice} is the teacher's own model; name a smaller one")
        same = [(t, c) for t, c in found if _pair(c) == choice]
        if same:
            t, c = max(same, key=lambda tc: tc[0].values[0])
            rule, trial = f"named ({choice}); the recipe of its best trial", t.number
        else:
            arch, encoder = choice.split("/", 1)
            model = ModelSpec(arch=arch, encoder=encoder, encoder_depth=teacher.model.encoder_depth,
                              encoder_weights=teacher.model.encoder_weights)
            c = teacher.with_changes(model=model.model_dump())
            rule, trial = f"named ({choice}); the search never trained it, so the teacher's recipe", None
    else:
        t, c, rule = _by_rule(choice, found, teacher_pair)
        trial = t.number
    cfg = c.with_changes(epochs=spec.epochs or teacher.epochs, seed=teacher.seed, schedule_epochs=None)
    if spec.lr is not None:
        cfg = cfg.with_changes(optimizer={**cfg.optimizer.model_dump(), "lr": spec.lr})
        rule += f"; LR {spec.lr:g} (final.distill.lr)"
    m = cfg.model
    problem = pair_problem(m.arch, m.encoder, m.encoder_depth, *input_size)
    if problem is not None:
        raise ConfigError(f"{FIELD}: {m.arch}/{m.encoder} cannot segment {input_size[0]}x{input_size[1]} "
                          f"images at encoder depth {m.encoder_depth}: {problem}")
    check_encoder_weights(m.encoder_weights, [m.encoder], FIELD)
    return Student(cfg, rule, trial)


def _checked(text: str) -> str:
    try:
        return check_student_pair(text)
    except ValueError as exc:
        raise ConfigError(f"--student: {exc}") from None
