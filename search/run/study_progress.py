"""What a running study shows: one line with the trials finished of this run's budget, those running, the
best so far and the time left at this run's pace; a line per finished trial; the running trial's own
progress line (epoch, batch, rate, ETA) when it runs in this process and, after its first epoch, the
study's remaining time on this machine; and the one-time note that a GPU-sized spec runs on CPU.

    python -m search study smoke        # search.cli drives a StudyProgress
"""

from __future__ import annotations

import sys
import time

import optuna
from tqdm import tqdm

from search.spec.parse import spec_path
from search.study import studies
from training.progress import StatusLine, format_duration


class StudyProgress:
    """The study's state and the running trial's epoch, batch, rate and ETA. On a terminal: one live tqdm
    line. In a log file: a line when a trial ends and at most one a minute in between (no flood)."""

    def __init__(self, study: optuna.Study, target: int, enabled: bool = True, max_epochs: int | None = None):
        self.study, self.start = study, studies.count_finished(study)
        self.target, self.max_epochs, self.enabled = target, max_epochs, enabled
        self.t0 = time.monotonic()
        self.reported = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.tty = sys.stderr.isatty()
        self._last: tuple | None = None
        self._shown = 0.0
        self.study_text, self.trial_text, self.estimated = "", "", False
        self.lines = StatusLine()
        self.bar = tqdm(total=target, desc=f"study {study.study_name}", unit="trial", dynamic_ncols=True,
                        disable=not (enabled and self.tty))  # fmt: skip

    def __call__(self, *_args) -> None:
        """After every trial (and on the workers' poll): counts and the best so far."""
        info = studies.summary(self.study)
        # reruns and recovered trials do not count (as for the budget): a resumed study starts at 0/n
        done = min(studies.count_finished(self.study) - self.start, self.target)
        state = (done, info["running"], info["best_value"], info["pareto"], info["pruned"], info["failed"])
        if state == self._last:
            return  # the workers' poll would otherwise repeat the same line every 2 s
        self._last = state
        self._report_finished()
        left = ""
        if 0 < done < self.target:
            per_trial = (time.monotonic() - self.t0) / done
            left = f", ~{format_duration(per_trial * (self.target - done))} left at this pace"
        self.study_text = (f"{info['running']} running, {studies.best_text(info)}, pruned {info['pruned']}, "
                           f"failed {info['failed']}{left}")  # fmt: skip
        self.bar.n = done
        if self.tty:
            self._show(force=True)
        elif self.enabled:
            name = self.study.study_name
            self.lines(f"study {name}: {done}/{self.target} trials, {self.study_text}", force=True)

    def _report_finished(self) -> None:
        """A line per trial that finished since the last call, whichever worker ran it."""
        for trial in self.study.get_trials(deepcopy=False):
            if not trial.state.is_finished() or trial.number in self.reported:
                continue
            self.reported.add(trial.number)
            if trial.user_attrs.get("warm_start_from"):
                continue
            value = "" if trial.values is None else " " + ", ".join(f"{v:.4g}" for v in trial.values)
            epochs = f" after {max(trial.intermediate_values)} epoch(s)" if trial.intermediate_values else ""
            took = ""
            if trial.datetime_start and trial.datetime_complete:
                seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
                took = f" in {format_duration(seconds)}"
            reason = trial.user_attrs.get("reason")
            why = f" ({reason})" if reason and trial.state.name != "COMPLETE" else ""
            self.write(f"trial {trial.number} {trial.state.name}{value}{epochs}{took}{why}")

    def trial_status(self, text: str, force: bool = False, epoch_seconds: float | None = None) -> None:
        """A trial's progress line (training.progress.ProgressLine's sink)."""
        self.trial_text = text
        if epoch_seconds is not None and not self.estimated:
            self.estimated = True
            self._estimate(epoch_seconds)
        if self.tty:
            self._show(force)
        elif self.enabled:
            self.lines(text, force)

    def _show(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._shown >= 0.5:
            self._shown = now
            text = " | ".join(t for t in (self.study_text, self.trial_text) if t)
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()

    def _estimate(self, epoch_seconds: float) -> None:
        """After the study's first epoch: what the rest costs on this machine, at most."""
        if not self.enabled or not self.max_epochs:
            return
        left = max(self.target - (studies.count_finished(self.study) - self.start), 1)
        total = left * self.max_epochs * epoch_seconds
        self.write(
            f"first epoch took {format_duration(epoch_seconds)}: the {left} trial(s) to run need up to "
            f"{format_duration(total)} on this machine ({self.max_epochs} epochs each; less as the pruner "
            "stops weak trials early, more for bigger models)"
        )

    def write(self, message: str) -> None:
        if self.tty:
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def cpu_note(name: str, gpus: list[str]) -> str | None:
    """On a machine without a GPU, a spec with a `<name>-cpu` sibling is a GPU-sized study: say so once."""
    if gpus or name.endswith("-cpu"):
        return None
    try:
        spec_path(f"{name}-cpu")
    except FileNotFoundError:
        return None
    return (
        f"note: no GPU here, and {name} is sized for one (a trial can take hours on CPU). The CPU profile "
        f"runs a trial in minutes on 2 cores: make study NAME={name}-cpu"
    )
