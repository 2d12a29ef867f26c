"""Every validated epoch of a trial reaches Optuna here, and the pruner's verdict comes back as PruneTrial."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna

from search.spec.objectives import EPOCH_VALUES_ATTR
from search.study.epoch_budget import BUDGET_REASON, epochs_spent
from training.callbacks import Callback


class PruneTrial(optuna.TrialPruned):
    """TrialPruned carrying why (user attr `reason`) and when (`prune_epoch`)."""

    def __init__(self, reason: str, epoch: int | None = None, detail: str = ""):
        self.reason, self.epoch = reason, epoch
        super().__init__(f"pruned ({reason}) at epoch {epoch}{': ' + detail if detail else ''}")


class ReportCallback(Callback):
    """Reports the objective to Optuna at every validated epoch and prunes when the pruner says so (a
    multi-objective study cannot report: `report=False` keeps the curve as a user attr and the NaN check).
    One instance serves every attempt of a trial (an out-of-memory retry resumes), so no epoch is reported
    twice; a resumed run's done epochs (`info["history"]`) are reported under their own numbers."""

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        *,
        report: bool = True,
        budget: tuple[int, int] | None = None,
        run: Any = None,
    ):
        self.trial, self.metric, self.report = trial, metric, report
        self.budget = budget  # (the study's total_epochs, this trial's epochs): search.study.epoch_budget
        self.run = run  # the trial's MlflowRun, tagged when the trial resumes another
        self.curve: dict[str, float] = {}
        self.reported: set[int] = set()
        self.optuna_seconds = 0.0
        self.last_epoch = 0

    def on_train_start(self, config: Any, info: dict[str, Any]) -> None:
        done = [row for row in info.get("history", []) if self.metric in row]
        self.last_epoch = int(info.get("start_epoch", 1)) - 1
        for row in done:  # from the checkpoint: the cut trial may have died between saving and reporting
            self._record(int(row["epoch"]), float(row[self.metric]))
        source = self.trial.user_attrs.get("requeued_from")
        if done and source is not None and "resumed_at_epoch" not in self.trial.user_attrs:
            self.trial.set_user_attr("resumed_at_epoch", self.last_epoch)
            if self.run is not None:
                self.run.set_tags({"search.resumed_from": source, "search.resumed_at_epoch": self.last_epoch})

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.last_epoch = epoch
        value = metrics.get(self.metric)
        if value is None:  # no validation this epoch
            if self.report:
                self._check_budget(epoch)
            return
        if not math.isfinite(float(value)):
            raise PruneTrial("nan", epoch, f"{self.metric} is {value}")
        self._record(epoch, float(value))
        if not self.report:
            return
        start = time.perf_counter()
        prune = self.trial.should_prune()  # after report: Hyperband records the rung value either way
        self.optuna_seconds += time.perf_counter() - start
        if prune:
            raise PruneTrial("pruner", epoch, f"{self.metric}={value:.3f}")
        self._check_budget(epoch)

    def _record(self, epoch: int, value: float) -> None:
        if not self.report:  # the curve is kept for replay and the report, as a user attr
            self.curve[str(epoch)] = value
            self.trial.set_user_attr(EPOCH_VALUES_ATTR, self.curve)
        elif epoch not in self.reported:
            start = time.perf_counter()
            self.trial.report(value, epoch)
            self.optuna_seconds += time.perf_counter() - start
        self.reported.add(epoch)

    def _check_budget(self, epoch: int) -> None:
        """Cut at the study's epoch budget, unless this epoch is the trial's last (it completes)."""
        if self.budget is None or epoch >= self.budget[1]:
            return
        total = self.budget[0]
        if epochs_spent(self.trial.study, exclude=self.trial.number) + epoch >= total:
            raise PruneTrial(BUDGET_REASON, epoch, f"the study's {total} epochs are spent")
