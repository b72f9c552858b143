"""The pruners a study file may name (``pruner.type``): each one's Optuna pruner, and the epochs
at which it reads a trial's score.

The second half matters because val is scored only where a score is read (``eval.epochs:
pruner``): a pruner whose epochs were guessed would decide on scores that were never measured.
So a new pruner is one entry here, with both halves, and the study file accepts exactly these
names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import optuna

    from automl.config import PrunerSection


def _rungs(p: PrunerSection, last: int) -> frozenset[int] | None:
    # Hyperband and successive halving decide at min_resource * reduction_factor**k
    rungs, r = set(), p.min_resource
    while r < last:
        rungs.add(r)
        r *= p.reduction_factor
    return frozenset(rungs | {last})


def _hyperband(p: PrunerSection, last: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=last,
                                          reduction_factor=p.reduction_factor)


def _successive_halving(p: PrunerSection, last: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)


def _median(p: PrunerSection, last: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.min_resource - 1)


def _nop(p: PrunerSection, last: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class PrunerKind:
    build: Callable[[PrunerSection, int], optuna.pruners.BasePruner]  # (section, trial epochs)
    # Epochs whose score it reads, given the section and the trial's last epoch; None: every epoch.
    reads: Callable[[PrunerSection, int], frozenset[int] | None]


PRUNERS: dict[str, PrunerKind] = {
    "hyperband": PrunerKind(_hyperband, _rungs),
    "median": PrunerKind(_median, lambda p, last: None),
    "successive_halving": PrunerKind(_successive_halving, _rungs),
    "none": PrunerKind(_nop, lambda p, last: frozenset({last})),
}
NO_PRUNER = "none"  # what a multi-objective study uses: Optuna cannot prune those
