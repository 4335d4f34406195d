"""A progress bar with rate and ETA on stderr; plain periodic lines when not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, *, label: str = "", stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_line_done = -1

    def update(self, done: int, *, failed: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < (0.1 if self.tty else 5.0):
            return
        self._last_draw = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        remaining = (self.total - done) / rate if rate > 0 else float("inf")
        eta = "--" if remaining == float("inf") else _duration(remaining)
        fails = f" {failed} failed" if failed else ""
        text = f"{done}/{self.total} {rate:.1f} img/s ETA {eta}{fails}"
        if self.tty:
            width = 30
            filled = int(width * done / self.total) if self.total else width
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label}[{bar}] {text}\x1b[K")
        elif done != self._last_line_done:
            self.stream.write(f"{self.label}{text}\n")
            self._last_line_done = done
        self.stream.flush()

    def close(self, done: int, *, failed: int = 0) -> None:
        self.update(done, failed=failed, force=True)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
