"""Search space + usable model pairs → ``trial.suggest_*`` → one :class:`TrialConfig`."""

from __future__ import annotations

import logging
from typing import Any

import optuna

from automl import registry
from automl.errors import ConfigError
from automl.space.params import Choice, Const, Param
from automl.space.schema import SearchSpace
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)

log = logging.getLogger(__name__)

# The Optuna name of a section's parameter is "<prefix>.<field>"; a branch's prefix is its name.
AUG_PREFIX, LOSS_PREFIX = "aug", "loss"


def _choice(values: list | tuple) -> Param:
    values = tuple(values)
    return Const(value=values[0]) if len(values) == 1 else Choice(choices=values)


class ResolvedSpace:
    """A validated search space whose model pairs are known to work at the study's input size."""

    def __init__(self, space: SearchSpace, pairs: list[str]):
        if not pairs:
            raise ConfigError("search space: no architecture/encoder pair works at this input size")
        self.space = space
        self.pairs = pairs

    def parameters(self) -> dict[str, Param]:
        """Every parameter the sampler may suggest (conditional ones included), by Optuna name."""
        return {k: v for k, v in self._table().items() if not isinstance(v, Const)}

    def _table(self) -> dict[str, Param]:
        s = self.space
        table: dict[str, Param] = {
            "model": _choice(self.pairs),
            "encoder_depth": s.model.encoder_depth,
            "aux_head": s.model.aux_head,
            "optimizer": _choice(list(s.optimizer)),
            "schedule": _choice(list(s.schedule)),
            "batch_size": s.batch_size,
        }
        sections = [*s.optimizer.items(), *s.schedule.items(), (AUG_PREFIX, s.augment), (LOSS_PREFIX, s.loss)]
        for prefix, section in sections:
            table.update({f"{prefix}.{k}": param for k, param in section.params().items()})
        return table

    def checked_baseline(self) -> dict[str, Any]:
        """The space's baseline params, each checked against the parameter it sets."""
        return self._checked(self.space.baseline, "baseline")

    def checked_portfolio(self) -> list[dict[str, Any]]:
        """The portfolio's recipes, checked like the baseline."""
        return [self._checked(recipe, f"portfolio[{i}]") for i, recipe in enumerate(self.space.portfolio)]

    def _checked(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        table = self._table()
        problems, params = [], {}
        for key, value in values.items():
            if key == "model" and value not in self.pairs and self._in_space(value):
                # filtered out at this input size or by the constraints: the sampler picks a model
                log.warning("%s model %s is not usable here; that trial samples its model", where, value)
                continue
            if key not in table:
                problems.append(f"  {where}.{key}: not a parameter; parameters: {', '.join(table)}")
            elif not table[key].contains(value):
                problems.append(f"  {where}.{key}: {value!r} is outside {table[key].values()}")
            elif not isinstance(table[key], Const):
                params[key] = value  # a value equal to a constant needs no enqueueing
        if problems:
            raise ConfigError(f"search space {where.split('[')[0]} is invalid:\n" + "\n".join(problems))
        return params

    def _in_space(self, pair: Any) -> bool:
        arch, _, encoder = str(pair).partition("/")
        return arch in self.space.model.architectures and encoder in self.space.model.encoders

    def sample(self, trial: optuna.Trial, *, data: DataSpec, epochs: int, seed: int,
               schedule_epochs: int | None = None) -> TrialConfig:
        s = self.space

        def pick(param: Param, name: str) -> Any:
            return param.suggest(trial, name)

        def picks(prefix: str, params: dict[str, Param]) -> dict[str, Any]:
            return {k: pick(param, f"{prefix}.{k}") for k, param in params.items()}

        arch, encoder = pick(_choice(self.pairs), "model").split("/", 1)
        aux_head = bool(pick(s.model.aux_head, "aux_head"))
        opt = pick(_choice(list(s.optimizer)), "optimizer")
        sched = pick(_choice(list(s.schedule)), "schedule")
        loss = s.loss.params()
        if not aux_head:  # no aux head, no aux loss: its weight is not sampled
            loss.pop(registry.AUX_LOSS)
        return TrialConfig(
            seed=seed,
            epochs=epochs,
            schedule_epochs=schedule_epochs,
            batch_size=int(pick(s.batch_size, "batch_size")),
            data=data,
            model=ModelSpec(arch=arch, encoder=encoder, encoder_depth=int(pick(s.model.encoder_depth, "encoder_depth")),
                            encoder_weights=s.model.encoder_weights, aux_head=aux_head),
            optimizer=OptimizerSpec(name=opt, **picks(opt, s.optimizer[opt].params())),
            schedule=ScheduleSpec(name=sched, **picks(sched, s.schedule[sched].params())),
            loss=LossSpec(**{registry.AUX_LOSS: 0.0, **picks(LOSS_PREFIX, loss)}),
            augment=AugmentSpec(crop_height=s.augment.crop[0], crop_width=s.augment.crop[1],
                                **picks(AUG_PREFIX, s.augment.params())),
        )
