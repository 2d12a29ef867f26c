"""training.progress: one status line, rewritten on a terminal, throttled in a log file, with ETAs."""

from __future__ import annotations

import io
from types import SimpleNamespace

from training.progress import ProgressLine, StatusLine, format_duration


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_duration():
    assert (
        format_duration(65) == "1:05" and format_duration(3725) == "1:02:05" and format_duration(-3) == "0:00"
    )


def test_a_log_file_gets_whole_lines_at_most_once_a_minute_unless_forced():
    log = io.StringIO()
    line = StatusLine(log, log_every_s=60)
    for i in range(500):
        line(f"batch {i}")
    line("epoch done", force=True)
    assert log.getvalue() == "batch 0\nepoch done\n"  # no carriage returns, no flood


def test_a_terminal_line_is_rewritten_in_place_and_cleared():
    term = _Terminal()
    line = StatusLine(term, tty_every_s=0)
    line("a long first text")
    line("short")
    assert "\n" not in term.getvalue() and term.getvalue().startswith("\ra long first text\rshort")
    line.close()
    assert term.getvalue().endswith("\r")


def test_progress_line_reports_epoch_batch_rate_and_etas():
    seen = []
    progress = ProgressLine(
        lambda text, force=False, **details: seen.append((text, force, details)), "trial 3: "
    )
    progress.on_train_start(SimpleNamespace(trainer=SimpleNamespace(epochs=4)), {"start_epoch": 1})
    progress.on_batch_end(1, 5, 10, 250.0)
    text, force, _ = seen[-1]
    assert text.startswith("trial 3: epoch 1/4 batch 5/10 250 img/s") and "epoch ETA" in text and not force
    progress.on_epoch_end(1, {"val/avg_score": 42.25})
    text, force, details = seen[-1]
    assert force and "val avg 42.2" in text and details["epoch_seconds"] >= 0
    progress.on_batch_end(2, 1, 10, 250.0)
    assert "val avg 42.2" in seen[-1][0] and "run ETA" in seen[-1][0]
