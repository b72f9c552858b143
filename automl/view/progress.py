"""The live view of a search: trials done / total, the current trial's epochs, best so far."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from automl.terminal import visible
from automl.trial.engine import EpochResult
from automl.trial.progress import TrialEvents
from automl.trial_config import TrialConfig


class LiveView(TrialEvents):
    def __init__(self, study: optuna.Study, n_trials: int, console: Console | None = None):
        self.study, self.n_trials = study, n_trials
        self.console = console or Console()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=False)
        self.trials_task = self.progress.add_task("trials", total=n_trials, info="", completed=self._done())
        self.epoch_task = self.progress.add_task("epoch ", total=1, info="", visible=False)

    def follow(self, study: optuna.Study, n_trials: int) -> None:
        """Switch to another study (the next stage of a staged search)."""
        self.study, self.n_trials = study, n_trials
        self.progress.update(self.trials_task, description=study.study_name, total=n_trials, completed=self._done())
        self._refresh_header()

    def __enter__(self) -> LiveView:
        self.progress.start()
        self._refresh_header()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def _counts(self) -> dict[TrialState, int]:
        counts: dict[TrialState, int] = {}
        for t in self.study.get_trials(deepcopy=False):
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def _done(self) -> int:
        c = self._counts()
        return c.get(TrialState.COMPLETE, 0) + c.get(TrialState.PRUNED, 0)

    def _refresh_header(self) -> None:
        c = self._counts()
        try:
            if len(self.study.directions) > 1:
                best = f"Pareto front {len(self.study.best_trials)}"
            else:
                best = f"best {self.study.best_value:.4f} (#{self.study.best_trial.number})"
        except ValueError:
            best = "best -"
        self.progress.update(self.trials_task, completed=c.get(TrialState.COMPLETE, 0) + c.get(TrialState.PRUNED, 0),
                             info=f"{best}  pruned {c.get(TrialState.PRUNED, 0)}  failed {c.get(TrialState.FAIL, 0)}")

    # TrialEvents
    def trial_started(self, number: int, cfg: TrialConfig) -> None:
        self.progress.update(self.epoch_task, description=f"trial {number:>3}", total=cfg.epochs, completed=0,
                             visible=True, info=cfg.summary())

    def epoch_done(self, number: int, res: EpochResult, epochs: int) -> None:
        scope = "val" if res.full_val else "val subset"
        self.progress.update(self.epoch_task, completed=res.epoch,
                             info=f"{scope} mIoU {res.miou:.4f}  loss {res.train_loss:.3f}")

    # Optuna callback, after each trial
    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = trial.user_attrs.get("stop_reason", trial.state.name.lower())
        value = "/".join(f"{v:.4g}" for v in trial.values) if trial.values else "-"
        cfg = trial.user_attrs.get("config")
        what = TrialConfig.from_dict(cfg).summary() if cfg else ""
        # plain text: the reason quotes exception messages, and "[completed]" would read as markup
        self.console.print(visible(f"trial {trial.number:>3} {trial.state.name:<8} mIoU {value}  {what}  [{reason}]"),
                           highlight=False, markup=False)
        self._refresh_header()
