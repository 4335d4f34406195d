"""What every pipeline step is given (the adapters, picked by the door from Settings), what a
task knows about its own dispatch, and how tasks are named."""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass

from imgpipe import imaging
from imgpipe.errors import InvalidRequest, PipelineError
from imgpipe.model import ImageRecord, TaskStatus
from imgpipe.ports import BlobStore, Clock, EventSink, StateStore, TaskQueue
from imgpipe.settings import Settings

ORIGINALS = "originals/"
SWEEP_LIMIT = 3  # re-enqueues of a stuck image before it is dead-lettered
SWEEP_MARGIN = 60.0  # seconds past the dispatch deadline before an image counts as stuck
# A `queued` image whose task is gone is repaired once it is this far past due: long enough for
# a task create that follows a register to have happened.
QUEUED_MARGIN = 120.0
# Files a re-render replaced stay this long, for clients holding the old metadata.json.
SUPERSEDED_GRACE = 24 * 3600.0
MAX_SCHEDULE_AHEAD = 30 * 86400.0  # Cloud Tasks' limit
PAGE_SIZE = 500  # objects per page task of an enqueue by prefix (Services.page_size)
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TASK_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    state: StateStore
    blobs: BlobStore  # outputs (public where a bucket is)
    queue: TaskQueue
    clock: Clock
    originals: BlobStore  # private everywhere: originals keep their EXIF and GPS
    dispatch_deadline: float = 600.0
    outputs_prefix: str = "processed/"  # `imgpipe process` writes straight into --out
    uploads: BlobStore | None = None  # where `{"object": ...}` tasks read from
    # Served as immutable URLs: a changed encoding gets a new path (the config fingerprint is
    # in the file name) and replaced files are removed after a grace period. `imgpipe
    # process` writes plain `{name}.{ext}` files into a folder the user owns instead.
    immutable_outputs: bool = True
    superseded_grace: float = SUPERSEDED_GRACE
    page_size: int = PAGE_SIZE
    events: tuple[EventSink, ...] = ()  # delivery of the event tasks (webhook, Pub/Sub)

    @property
    def emits_events(self) -> bool:
        return bool(self.settings.webhook_url or self.settings.events_topic)

    @property
    def limits(self) -> imaging.Limits:
        return imaging.Limits.from_settings(self.settings)

    def output_path(self, image_id: str, name: str) -> str:
        return f"{self.outputs_prefix}{image_id}/{name}"


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What the queue tells the worker about this dispatch (the X-CloudTasks-* headers)."""

    name: str
    queue: str
    retry_count: int = 0
    execution_count: int = 0
    first_attempt_at: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: TaskStatus | None  # None = failed attempt, to be retried
    image_id: str | None
    error: PipelineError | None = None


@dataclass(slots=True)
class Attempt:
    """The record as this attempt set it to `processing`: every later write of the attempt
    compares against it (generation and start time), so a stale attempt never touches a
    newer one."""

    started: ImageRecord | None = None


def task_name(kind: str, key: str, fingerprint: str, generation: int) -> str:
    """Hashed prefix first: Cloud Tasks shards on the name, sequential names hurt. The readable
    part keeps ASCII letters and digits only, so any object name makes a valid task id."""
    digest = hashlib.sha256(f"{kind}:{key}:{fingerprint}:{generation}".encode()).hexdigest()
    safe_key = "".join(c if c in _TASK_KEY_CHARS else "_" for c in key)[-64:]
    return f"{digest[:12]}-{kind}-{safe_key}-{fingerprint[:8]}-g{generation}"


def queue_for(svc: Services, priority: str | None, default: str = "normal") -> str:
    """Uploads default to the `high` queue, bulk enqueues to `normal`."""
    chosen = priority or default
    if chosen == "high":
        return svc.settings.queue_high
    if chosen == "normal":
        return svc.settings.queue
    raise InvalidRequest("'priority' must be 'high' or 'normal'")


def check_job_id(job_id: object) -> str | None:
    if job_id is None:
        return None
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidRequest("'job_id' must be 1-64 letters, digits, '-' or '_'")
    return job_id
