"""The domain records and the image state machine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

JsonDict = dict[str, Any]


class State(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    # A tombstone: the image was deleted. Kept until the sweeper has removed whatever a worker
    # that was rendering it wrote afterwards, so that a delete always wins.
    DELETED = "deleted"


VISIBLE_STATES = (State.QUEUED, State.PROCESSING, State.DONE, State.FAILED)
RATE_WINDOW = 300.0  # seconds of finished tasks a job's ETA is measured over


class TaskStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


# Which states each state may move to; every transition is a compare-and-set on the state.
TRANSITIONS: dict[State, frozenset[State]] = {
    # -> done without processing: repaired from a complete metadata.json (reconcile, sweeper).
    State.QUEUED: frozenset(
        {State.PROCESSING, State.FAILED, State.QUEUED, State.DONE, State.DELETED}
    ),
    State.PROCESSING: frozenset(
        {State.DONE, State.QUEUED, State.FAILED, State.PROCESSING, State.DELETED}
    ),
    State.DONE: frozenset({State.QUEUED, State.DONE, State.DELETED}),
    State.FAILED: frozenset({State.QUEUED, State.DONE, State.DELETED}),
    # The same bytes uploaded again after a delete are a new image.
    State.DELETED: frozenset({State.QUEUED, State.DELETED}),
}


def check_transition(expect: Iterable[State], new: State) -> None:
    """Guards the stores against a pipeline bug asking for a move the machine forbids."""
    for state in expect:
        if new not in TRANSITIONS[State(state)]:
            raise ValueError(f"no transition {State(state).value} -> {new.value}")


def image_id_for(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def is_image_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def event_letter_key(event_id: str) -> str:
    return "event-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def object_letter_key(path: str) -> str:
    """The key of a dead letter for an object that never became an image: hashed, since an
    object name may hold any character (a '/' is not allowed in a Firestore document id)."""
    return "object-" + hashlib.sha256(path.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    image_id: str
    state: State
    source: JsonDict  # {"path": ...} | {"object": ...}, plus "bytes"
    fingerprint: str
    created_at: float
    updated_at: float
    generation: int = 0  # bumped by every re-enqueue that must not collide with a tombstone
    attempts: int = 0
    next_attempt_at: float | None = None
    started_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    sweeps: int = 0
    result: JsonDict | None = None  # metadata.json content once done
    # The task that carries the image now (checked by the sweeper: a `queued` image whose task
    # is gone is repaired) and the job task it counts for.
    task_name: str | None = None
    task_queue: str | None = None
    job_id: str | None = None
    job_key: str | None = None
    # The attempt that set `processing` (task name; `attempts` and `started_at` say which try):
    # a later attempt of the same task may take over at once, another task may not.
    started_by: str | None = None
    first_attempt_at: float | None = None
    # Output files that a re-render replaced; removed by the sweeper after `cleanup_at`.
    superseded: list[str] | None = None
    cleanup_at: float | None = None
    # The focal point ([x, y], fractions of the displayed width and height) cover crops keep.
    focus: list[float] | None = None

    def evolve(self, **changes: Any) -> ImageRecord:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    name: str | None
    created_at: float
    total_tasks: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    listing: bool = False  # an enqueue by prefix is still walking the listing
    recent: int = 0  # tasks finished in the last RATE_WINDOW seconds (the job's throughput)

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("done", "skipped", "failed"))

    def eta_seconds(self, now: float) -> float | None:
        """From the job's measured throughput over the last RATE_WINDOW seconds; None while
        nothing has finished recently (or the listing is still growing the total)."""
        remaining = self.total_tasks - self.finished
        if remaining <= 0:
            return 0.0 if not self.listing and self.total_tasks else None
        window = min(RATE_WINDOW, max(1.0, now - self.created_at))
        if self.recent == 0 or self.listing:
            return None
        return round(remaining * window / self.recent, 1)

    def to_json(self, now: float | None = None) -> JsonDict:
        total = self.total_tasks
        done = self.finished
        return {
            "id": self.job_id,
            "name": self.name,
            "status": "running"
            if self.listing
            else ("done" if total and done >= total else ("empty" if not total else "running")),
            "total_tasks": total,
            "completed_tasks": self.counts.get("done", 0),
            "failed_tasks": self.counts.get("failed", 0),
            "skipped_tasks": self.counts.get("skipped", 0),
            "progress_percentage": round(100.0 * done / total, 1)
            if total
            else (0.0 if self.listing else 100.0),
            "listing": self.listing,
            "created_at": self.created_at,
            "eta_seconds": None if now is None else self.eta_seconds(now),
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    image_id: str
    task_name: str
    error_code: str
    error_message: str
    attempts: int
    first_attempt_at: float | None
    last_attempt_at: float
    # The uploads-store object of an object task that never became an image (unreadable, or
    # refused at the door): what `failed retry` enqueues again.
    source_object: str | None = None
    # The attempt the letter is about: it marks the image failed only while the image is still
    # at that generation and start time (a late letter never touches a newer attempt).
    generation: int | None = None
    started_at: float | None = None
    job_id: str | None = None
    payload: str | None = None  # an event that was never delivered, to deliver again

    def to_json(self) -> JsonDict:
        return {
            "image_id": self.image_id,
            "task_name": self.task_name,
            "error": {"code": self.error_code, "message": self.error_message},
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "source_object": self.source_object,
        }
