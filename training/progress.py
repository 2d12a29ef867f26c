"""Where a long run stands, on one line: epoch and batch, images per second, and the time left.

    from training.progress import ProgressLine, StatusLine
    train(config, out, callbacks=[ProgressLine(StatusLine())])

On a terminal the line is rewritten in place a few times a second; into a log file or a pipe it becomes a
full line at most once a minute, so a two-hour trial writes a hundred lines, not a million carriage
returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from training.callbacks import Callback


def format_duration(seconds: float) -> str:
    """3725 -> '1:02:05', 65 -> '1:05'."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StatusLine:
    """One status line on `stream`: rewritten in place on a terminal (at most every `tty_every_s`),
    else written as a whole line at most every `log_every_s`."""

    def __init__(self, stream: TextIO | None = None, tty_every_s: float = 0.5, log_every_s: float = 60.0):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = tty_every_s if self.tty else log_every_s
        self._last = -float("inf")
        self._width = 0

    def __call__(self, text: str, force: bool = False, **_details: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


class ProgressLine(Callback):
    """Feeds `sink(text)` with the run's epoch, batch, rate and ETAs (the epoch's and the run's)."""

    def __init__(self, sink: Callable[..., None], prefix: str = ""):
        self.sink, self.prefix = sink, prefix
        self.epochs, self.start_epoch = 1, 1
        self.epoch_seconds: list[float] = []
        self._epoch_start = time.monotonic()
        self._last_score = ""

    def on_train_start(self, config: Any, info: dict[str, Any]) -> None:
        self.epochs = config.trainer.epochs
        self.start_epoch = int(info.get("start_epoch", 1))
        self._epoch_start = time.monotonic()

    def on_batch_end(self, epoch: int, step: int, steps: int, images_per_s: float) -> None:
        elapsed = time.monotonic() - self._epoch_start
        epoch_left = elapsed / step * (steps - step)
        # validation is part of an epoch: once one epoch is timed, whole epochs give the better estimate
        per_epoch = self.epoch_seconds[-1] if self.epoch_seconds else elapsed / step * steps
        run_left = epoch_left + per_epoch * (self.epochs - epoch)
        self.sink(
            f"{self.prefix}epoch {epoch}/{self.epochs} batch {step}/{steps} {images_per_s:.0f} img/s"
            f"{self._last_score} | epoch ETA {format_duration(epoch_left)}, "
            f"run ETA {format_duration(run_left)}"
        )

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.epoch_seconds.append(time.monotonic() - self._epoch_start)
        self._epoch_start = time.monotonic()
        if "val/avg_score" in metrics:
            self._last_score = f", val avg {metrics['val/avg_score']:.1f}"
        seconds = self.epoch_seconds[-1]
        self.sink(
            f"{self.prefix}epoch {epoch}/{self.epochs} done in {format_duration(seconds)}{self._last_score}"
            f" | run ETA {format_duration(seconds * (self.epochs - epoch))}",
            force=True,
            epoch_seconds=seconds,
        )


__all__ = ["ProgressLine", "StatusLine", "format_duration"]
