"""Clocks satisfying `ports.Clock`. The queue and the dispatcher read time only through one, so
tests drive hours of backoff with `FakeClock.advance` instead of sleeping."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol, runtime_checkable


class SystemClock:
    def now(self) -> float:
        return time.time()


@runtime_checkable
class WakingClock(Protocol):
    """A clock that can wake idle waiters when its time jumps (the dispatcher subscribes its
    wake-up event, so a test's `advance` is seen at once rather than after a poll interval)."""

    def now(self) -> float: ...

    def subscribe(self, event: threading.Event) -> None: ...


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._events: weakref.WeakSet[threading.Event] = weakref.WeakSet()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            now = self._now
            events = list(self._events)
        for event in events:
            event.set()
        return now

    def subscribe(self, event: threading.Event) -> None:
        with self._lock:
            self._events.add(event)
