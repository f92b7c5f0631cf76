"""A dependency-free progress bar for long jobs on a terminal, plain lines in logs."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, total: int, stream=None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.monotonic()
        self._last_line = -1

    def __call__(self, event: dict) -> None:
        if event.get("stage") == "frame":
            self.update(int(event["done"]))

    def update(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed < 0.5:  # too early for a rate that means anything
            text = f"{self.label} {done}/{self.total}"
        else:
            rate = done / elapsed
            eta = (self.total - done) / rate if rate > 0 else 0.0
            text = f"{self.label} {done}/{self.total} {rate:5.1f} fps ETA {_clock(eta)}"
        if self.tty:
            filled = int(30 * done / self.total)
            self.stream.write(f"\r{text} [{'#' * filled}{'.' * (30 - filled)}]")
            if done >= self.total:
                self.stream.write("\n")
        else:  # logs (farm, CI): a line per tenth of the work
            tenth = done * 10 // self.total
            if tenth != self._last_line:
                self._last_line = tenth
                self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
