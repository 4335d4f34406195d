"""The three ports the pipeline talks to. Adapters live in `imgpipe.local` and `imgpipe.gcp`;
the pipeline imports only these Protocols."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from imgpipe.model import DeadLetter, ImageRecord, JobRecord, State, TaskStatus
from imgpipe.queueconfig import RetryConfig


class Clock(Protocol):
    """Wall-clock seconds since the epoch; injectable so tests never sleep for minutes."""

    def now(self) -> float: ...


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task as Cloud Tasks would carry it: a named HTTP POST to one of imgpipe's targets."""

    queue: str  # "high" | "normal"
    name: str  # task id: [A-Za-z0-9_-]{1,500}, hashed prefix
    target: str  # "worker" | "failure"
    body: bytes  # JSON; references only, never image bytes
    schedule_time: float | None = None  # epoch seconds; None or past = now


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    state: str  # "RUNNING" | "PAUSED"
    depth: int | None  # tasks not yet finished (None where unknown)
    in_flight: int | None  # tasks being dispatched right now


class TaskQueue(Protocol):
    def create(self, task: TaskRequest) -> bool:
        """Create the task; False when the name exists or existed recently (ALREADY_EXISTS).
        Raises `TransientError` when the queue service is unreachable."""
        ...

    def stats(self) -> list[QueueStats]: ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def exists(self, queue: str, name: str) -> bool:
        """Whether the task is live (queued, in backoff or being dispatched); a finished or
        deleted task is not. Raises `TransientError` when the queue cannot be asked."""
        ...

    def retry_config(self, queue: str) -> RetryConfig:
        """The queue's own retry settings, which decide when it gives up on a task: the worker
        knows its last attempt from these, never from a second copy."""
        ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobPage:
    items: list[BlobInfo]
    next_token: str | None  # None = the listing is complete


class BlobStore(Protocol):
    def put(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        overwrite: bool = False,
    ) -> bool:
        """Create-once write; False when the object already exists (left unchanged).
        `overwrite` replaces it atomically instead (mutable objects: metadata.json)."""
        ...

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        """Raises `NotFound` when absent, `FileTooLarge` when larger than `max_bytes` (never
        reading more than that)."""
        ...

    def size(self, path: str) -> int | None:
        """The object's size from its metadata (no byte read); None when absent."""
        ...

    def exists(self, path: str) -> bool: ...

    def delete(self, path: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def list(self, prefix: str) -> Iterator[BlobInfo]: ...

    def list_page(self, prefix: str, token: str | None, limit: int) -> BlobPage:
        """One page of the listing in name order; pass `next_token` back for the next."""
        ...

    def url(self, path: str) -> str: ...


class StateStore(Protocol):
    """Image, job and dead-letter records; every transition a compare-and-set. Raises
    `TransientError` when the store cannot be reached."""

    def get_image(self, image_id: str) -> ImageRecord | None: ...

    def insert_image(self, record: ImageRecord) -> tuple[ImageRecord, bool]:
        """Insert unless present; returns the stored record and whether it was created."""
        ...

    def transition(
        self,
        image_id: str,
        expect: Iterable[State],
        changes: Mapping[str, Any],
        *,
        match: Mapping[str, Any] | None = None,
    ) -> ImageRecord | None:
        """Apply `changes` (ImageRecord field names) only if the current state is in
        `expect` and every field in `match` has the given value; returns the new record, or
        None when the precondition failed."""
        ...

    def purge_image(self, image_id: str) -> bool:
        """Remove the record for good (a `deleted` tombstone once its outputs are gone)."""
        ...

    def list_images(
        self,
        *,
        state: State | None = None,
        not_fingerprint: str | None = None,
        started_before: float | None = None,
        updated_before: float | None = None,
        cleanup_before: float | None = None,
        limit: int = 1000,
    ) -> list[ImageRecord]: ...

    def count_by_state(self) -> dict[str, int]: ...

    def page_images(
        self, *, state: State | None, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        """Newest first (by creation), never a tombstone; `cursor` from the previous page."""
        ...

    def count_done_since(self, since: float) -> int: ...

    def count_dead_letters(self) -> int: ...

    def page_jobs(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]: ...

    def create_job(
        self, job_id: str, name: str | None, created_at: float, *, listing: bool = False
    ) -> None: ...

    def finish_listing(self, job_id: str) -> None:
        """The enqueue by prefix of this job has walked its whole listing."""
        ...

    def add_job_task(self, job_id: str, task_key: str, image_id: str | None) -> bool:
        """A per-task record (task_key unique within the job); False when already there."""
        ...

    def finish_job_task(
        self, job_id: str, task_key: str, status: TaskStatus, at: float | None = None
    ) -> bool:
        """Pending -> terminal only, so a task run twice counts once; `at` dates it."""
        ...

    def get_job(self, job_id: str, now: float | None = None) -> JobRecord | None:
        """With `now`, also how many of its tasks finished in the last RATE_WINDOW seconds."""
        ...

    def record_dead_letter(self, letter: DeadLetter) -> bool:
        """Store it (idempotent by task name) and mark the image failed, atomically. With
        `letter.generation` set, only while the image is still at that generation (and
        `started_at`, when set) and `queued` or `processing`; a letter about an older attempt
        of an image that moved on is dropped. Returns whether a new letter was stored."""
        ...

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def remove_dead_letters(self, task_names: Iterable[str]) -> int:
        """Exactly these letters (by task name), never others of the same image."""
        ...

    def remove_image_letters(self, image_id: str) -> int: ...


class EventSink(Protocol):
    """Where events go (a webhook, a Pub/Sub topic). `send` raises `TransientError` when the
    receiver is down or answers non-2xx: the delivery task is then retried with backoff."""

    def send(self, body: bytes, event_type: str, subject: str) -> None: ...
