"""How long one training run lasts: "train for a time, with a schedule spanning a time".

:func:`automl.trial.engine.fit` asks a :class:`Length` how many epochs to train, which to score
and at which pruner step to report each score. The plain one is fixed in epochs. Two re-plan
from measured training time, through the same mutable schedule span (:class:`~automl.trial.optim.Span`):

- :class:`FinishBy` (``automl run``'s final retrain): after epoch 2 it sets the epoch count so
  that training, with its remaining val passes, ends at a wall-clock time; halfway through it
  checks again against the median of all its epochs, and re-plans if that moved the count; once
  it has two val passes of its own it moves the end time to where the work after it, re-priced
  from the faster pass, says, and re-plans again. After that, each epoch checks that the rest,
  at its recent epochs' pace, still ends in time, and shortens the plan when it would not (a
  machine that slows late would overrun the budget).
- :class:`EqualTime` (equal-time search trials): a trial gets ``trial_epochs`` reference epochs
  of training time (the baseline's steady epoch) and an LR schedule spanning
  ``trial_schedule_epochs`` of them; a config 1.6× slower per epoch trains ~1.6× fewer epochs.
  Its scores are reported at reference epochs elapsed, so the pruner compares equal time.

:class:`GatedBaseline` (``automl run``'s baseline trial) asks, after its first epoch, whether the
search's share affords enough trials of its predicted length; if not, it ends there.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from typing import Callable, Collection

from automl.trial.optim import Span

log = logging.getLogger(__name__)

REPLAN_EPOCH = 2  # the first epoch past the warm-up (lazy init, cudnn autotune, loader start)
# Halfway, a second look: one epoch 2 slowed by another process (or sped up by a warm cache) set
# the whole plan, and a retrain that ends a minute early leaves that minute unused. The count
# moves only if it changed by more than MIDWAY_TOLERANCE of it (and a whole epoch): the LR
# schedule stretches with it, and small moves are not worth the jolt.
MIDWAY_TOLERANCE = 0.05
# Past the midway look, the pace is the median of this many latest epochs: it follows a machine
# that slowed (another load, thermal limits) within a few epochs, and one slow epoch does not move it.
RECENT_EPOCHS = 5


def steady_epoch_s(epoch_train_s: list[float]) -> float | None:
    """A training epoch's time past the warm-up: the median of the epochs after the first (the
    first alone when there is no other)."""
    if not epoch_train_s:
        return None
    return statistics.median(epoch_train_s[1:] or epoch_train_s)


class Length:
    """A fixed number of epochs; the schedule spans ``schedule_epochs`` (default: ``epochs``)."""

    def __init__(self, epochs: int, schedule_epochs: int | None = None, eval_epochs: Collection[int] | None = None):
        self.epochs = epochs
        self.schedule_epochs = max(schedule_epochs or epochs, epochs)
        self.eval_epochs = eval_epochs  # None: every epoch; the last is always scored
        self.span = Span(self.schedule_epochs)
        self.steps_per_epoch = 1

    def start(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self._sync()

    def set(self, epochs: int, schedule_epochs: int | None = None) -> None:
        self.epochs = epochs
        self.schedule_epochs = max(schedule_epochs or epochs, epochs)
        self._sync()

    def _sync(self) -> None:
        self.span.total_steps = self.schedule_epochs * self.steps_per_epoch

    def after_epoch(self, epoch: int, epoch_train_s: list[float]) -> None:
        """Called after each epoch's training, before its score: a re-plan goes here."""

    def scored(self, epoch: int, epoch_train_s: list[float]) -> bool:
        """Whether this epoch (not the last, which always is) gets a val score."""
        return self.eval_epochs is None or epoch in self.eval_epochs

    def step(self, epoch: int, epoch_train_s: list[float], last: bool) -> int | None:
        """The pruner step a scored epoch reports at (None: not reported)."""
        return epoch


class FinishBy(Length):
    """A retrain whose training and val passes end at ``finish_by`` (time.monotonic()): planned
    at ``epochs``, re-planned once after epoch 2 from its own measured epochs. Val is scored at
    ``eval_points`` evenly spaced epochs of the re-planned length (the last on all of val)."""

    def __init__(self, epochs: int, finish_by: float, *, eval_points: int, subset_pass_s: float,
                 full_pass_s: float, min_epochs: int = 1, margin: float = 0.02,
                 subset_passes: Callable[[], list[float]] = list, clock: Callable[[], float] | None = None,
                 retime: Callable[[float], float] | None = None,
                 epoch_cost: Callable[[float], float] | None = None, runs: int = 1):
        super().__init__(epochs)
        # When the time is shared with ``runs - 1`` later runs of the same model at the count this
        # one ends with (a distilled student's, then the student alone's): one of this run's
        # epochs (its measured seconds) → the seconds it costs all runs, and every run's val passes.
        self.epoch_cost, self.runs = epoch_cost, runs
        # given the retrain's own warm subset pass (s), a new ``finish_by``: what comes after the
        # retrain was priced from the search's val pass, and a trial's first pass is a cold one
        self.retime = retime
        self.retimed = False
        self.planned, self.finish_by, self.points = epochs, finish_by, eval_points
        self.subset_pass_s, self.full_pass_s = subset_pass_s, full_pass_s
        self.min_epochs, self.margin = min_epochs, margin
        self.clock = clock or (lambda: time.monotonic())
        self.subset_passes = subset_passes  # the retrain's own subset passes so far (seconds each)
        self.midway: int | None = None  # the epoch of the second look, set by the first re-plan

    def after_epoch(self, epoch: int, epoch_train_s: list[float]) -> None:
        if epoch == min(REPLAN_EPOCH, self.planned):
            self._replan(epoch, epoch_train_s, always=True)
            self.midway = max(epoch + 1, round(self.epochs / 2))
        elif epoch == self.midway and epoch < self.epochs:
            self._replan(epoch, epoch_train_s, always=False)
        elif self.midway is not None and self.midway < epoch < self.epochs:
            if self._retime():  # the end moved: the plan follows it, however little (a few epochs
                # within the midway tolerance are still seconds the run would leave unused)
                self._replan(epoch, epoch_train_s, always=True)
            else:
                self._replan(epoch, epoch_train_s, always=False, recent=True)

    def _retime(self) -> bool:
        """Once, past the midway look and once the retrain has two val passes of its own: move the
        end from the faster of them. The retrain's first pass is as cold as the trial's, and
        re-pricing from it alone moved the end the wrong way (benchmarks/README.md, em-like)."""
        done = self.subset_passes()
        if self.retime is None or self.retimed or len(done) < 2:
            return False
        self.retimed = True
        before, self.finish_by = self.finish_by, self.retime(min(done))
        log.info("final retrain: the time after it re-priced from its own val passes: training ends %+.0f s "
                 "from the first plan", self.finish_by - before)
        return True

    def _replan(self, epoch: int, epoch_train_s: list[float], always: bool, recent: bool = False) -> None:
        measured = statistics.median(epoch_train_s[-RECENT_EPOCHS:]) if recent else steady_epoch_s(epoch_train_s)
        # A late check prices epochs at their pace alone: the margin is for plans made early, and
        # with it a late check would find one epoch fewer fits and cut a plan that ends in time.
        spe = (measured if self.epoch_cost is None else self.epoch_cost(measured)) * (1 if recent else 1 + self.margin)
        done = self.subset_passes()
        sub = statistics.mean(done) if done else self.subset_pass_s
        left = self.finish_by - self.clock()
        # the val passes still to come: the final full pass and the subset points not yet passed,
        # and every later run's in full
        evals = self.full_pass_s + max(0, self.points - 1 - len(done)) * sub
        evals += (self.runs - 1) * (self.full_pass_s + (self.points - 1) * sub)
        more = math.floor(max(0.0, left - evals) / spe) if spe > 0 else 0
        epochs = max(self.min_epochs, epoch + more)
        if recent and epochs >= self.epochs:  # late checks only shorten: the plan still fits
            return
        if not always and not recent and abs(epochs - self.epochs) <= max(1, MIDWAY_TOLERANCE * self.epochs):
            return
        before = self.epochs
        self.set(epochs)
        priced = "" if self.epoch_cost is None else f", {spe / (1 + self.margin):.2f} s with the runs after it"
        log.info("final retrain re-planned from its epochs (%.2f s each%s) at epoch %d: %d epochs (was %d, planned "
                 "%d), %.0f s left", measured, priced, epoch, self.epochs, before, self.planned, left)

    def scored(self, epoch: int, epoch_train_s: list[float]) -> bool:
        return epoch in eval_epochs(self.epochs, self.points)


def eval_epochs(epochs: int, points: int) -> set[int]:
    """``points`` evenly spaced epochs ending with the last one."""
    return {max(1, round(epochs * k / points)) for k in range(1, points + 1)}


class EqualTime(Length):
    """A search trial of ``epochs`` reference epochs of training time (``ref_s`` each), its
    schedule spanning ``schedule_epochs`` of them. Re-planned after epochs 1 and 2 from its own
    epochs: its epoch count clamped to [1, 3·epochs]. Scores are reported at reference epochs
    elapsed (floor(training seconds / ref_s)); one is evaluated when that crosses a rung the
    pruner reads (``rungs``; None: every epoch), and the last reports at ``epochs``.

    ``ref_s`` may be unknown at the start (the baseline has not measured it yet):
    ``lookup`` is asked again after each epoch until the re-plan epochs are past; a trial
    without it stays at equal epochs."""

    def __init__(self, epochs: int, schedule_epochs: int | None, rungs: Collection[int] | None,
                 ref_s: float | None, lookup: Callable[[], float | None] = lambda: None):
        super().__init__(epochs, schedule_epochs, rungs)
        self.ref_epochs, self.ref_schedule = epochs, max(schedule_epochs or epochs, epochs)
        self.ref_s, self.lookup = ref_s, lookup
        self.timed = False  # re-planned from time at least once
        self.reported = 0

    def after_epoch(self, epoch: int, epoch_train_s: list[float]) -> None:
        if epoch > REPLAN_EPOCH:
            return
        if self.ref_s is None:
            self.ref_s = self.lookup()
            if self.ref_s is None:
                return
        spe = steady_epoch_s(epoch_train_s)
        if not spe:
            return
        n = min(3 * self.ref_epochs, max(1, round(self.ref_epochs * self.ref_s / spe), epoch))
        self.set(n, max(n, round(self.ref_schedule * self.ref_s / spe)))
        self.timed = True

    def ref_elapsed(self, epoch_train_s: list[float]) -> int:
        return math.floor(sum(epoch_train_s) / self.ref_s) if self.timed else len(epoch_train_s)

    def _crossed(self, epoch_train_s: list[float]) -> int | None:
        """The highest step past the last report that the pruner reads (below the last)."""
        now = self.ref_elapsed(epoch_train_s)
        if self.eval_epochs is None:
            return now if self.reported < now < self.ref_epochs else None
        hits = [r for r in self.eval_epochs if self.reported < r <= now and r < self.ref_epochs]
        return max(hits) if hits else None

    def scored(self, epoch: int, epoch_train_s: list[float]) -> bool:
        return self._crossed(epoch_train_s) is not None or (self.eval_epochs is None and not self.timed)

    def step(self, epoch: int, epoch_train_s: list[float], last: bool) -> int | None:
        if last:
            return self.ref_epochs
        step = self._crossed(epoch_train_s)
        if step is not None:
            self.reported = step
        return step


class GatedBaseline(Length):
    """The baseline trial under a budget: after its first epoch, ``gate`` is asked with the
    trial's predicted wall time (seconds) whether a search can follow. A reason ends the trial at
    this epoch, scored on all of val: its score and timings are all the final needs, and the
    epochs it would have trained go to the final instead (``cut`` keeps the reason).

    The prediction, ``elapsed()`` so far plus the remaining epochs at the first one's training
    time, leaves out the val passes still to come: it errs towards searching."""

    def __init__(self, epochs: int, schedule_epochs: int | None, eval_epochs: Collection[int] | None,
                 gate: Callable[[float], str | None], elapsed: Callable[[], float]):
        super().__init__(epochs, schedule_epochs, eval_epochs)
        self.gate, self.elapsed = gate, elapsed
        self.cut: str | None = None
        self.predicted_s: float | None = None

    def after_epoch(self, epoch: int, epoch_train_s: list[float]) -> None:
        if epoch != 1 or self.epochs <= 1:
            return
        self.predicted_s = self.elapsed() + (self.epochs - 1) * epoch_train_s[0]
        self.cut = self.gate(self.predicted_s)
        if self.cut is not None:
            self.set(epoch, self.schedule_epochs)
            log.info("%s", self.cut)
