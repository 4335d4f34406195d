"""The pipeline steps, free of any framework: register, enqueue, process one task, record a
dead letter, sweep, reprocess, retry, delete, status. Every door (CLI, local HTTP server, Cloud
Functions) calls these with the adapters it picked from Settings."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe import imaging
from imgpipe.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermanentError,
    PipelineError,
    TransientError,
)
from imgpipe.model import (
    DeadLetter,
    ImageRecord,
    JsonDict,
    State,
    TaskStatus,
    image_id_for,
    is_image_id,
)
from imgpipe.ports import BlobStore, Clock, StateStore, TaskQueue, TaskRequest
from imgpipe.queueconfig import RetryConfig, backoff_delay
from imgpipe.settings import CACHE_CONTROL, Settings

ORIGINALS = "originals/"
SWEEP_LIMIT = 3  # re-enqueues of a stuck image before it is dead-lettered
SWEEP_MARGIN = 60.0  # seconds past the dispatch deadline before an image counts as stuck


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    state: StateStore
    blobs: BlobStore  # originals and outputs
    queue: TaskQueue
    clock: Clock
    retry: RetryConfig
    dispatch_deadline: float = 600.0
    outputs_prefix: str = "processed/"  # `imgpipe process` writes straight into --out
    uploads: BlobStore | None = None  # where `{"object": ...}` tasks read from

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


# ---------------------------------------------------------------- naming


def task_name(kind: str, key: str, fingerprint: str, generation: int) -> str:
    """Hashed prefix first: Cloud Tasks shards on the name, sequential names hurt."""
    digest = hashlib.sha256(f"{kind}:{key}:{fingerprint}:{generation}".encode()).hexdigest()
    safe_key = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)[-64:]
    return f"{digest[:12]}-{kind}-{safe_key}-{fingerprint[:8]}-g{generation}"


def queue_for(svc: Services, priority: str | None, default: str = "normal") -> str:
    """Uploads default to the `high` queue, bulk enqueues to `normal`."""
    chosen = priority or default
    if chosen == "high":
        return svc.settings.queue_high
    if chosen == "normal":
        return svc.settings.queue
    raise InvalidRequest(f"priority must be 'high' or 'normal', not {priority!r}")


# ---------------------------------------------------------------- register and enqueue


def new_job(svc: Services, name: str | None = None) -> str:
    job_id = uuid.uuid4().hex[:20]
    svc.state.create_job(job_id, name, svc.clock.now())
    return job_id


def register(svc: Services, data: bytes, source: JsonDict) -> tuple[ImageRecord, bool]:
    """Validate the bytes (format, size, pixels: permanent errors raise here, before anything
    is stored), keep the original and record the image as queued. Idempotent by content."""
    info = imaging.probe(data, svc.limits)
    image_id = image_id_for(data)
    if "path" not in source:
        svc.blobs.put(ORIGINALS + image_id, data, content_type=f"image/{info.format}")
        source = {**source, "original": ORIGINALS + image_id}
    now = svc.clock.now()
    record = ImageRecord(
        image_id=image_id,
        state=State.QUEUED,
        source={**source, "bytes": len(data), "format": info.format},
        fingerprint=svc.settings.fingerprint,
        created_at=now,
        updated_at=now,
    )
    return svc.state.insert_image(record)


def is_current(svc: Services, record: ImageRecord) -> bool:
    """Done under this configuration, with its outputs in place."""
    return (
        record.state is State.DONE
        and record.fingerprint == svc.settings.fingerprint
        and svc.blobs.exists(svc.output_path(record.image_id, "metadata.json"))
    )


def enqueue_image(
    svc: Services,
    record: ImageRecord,
    *,
    queue: str,
    job_id: str | None = None,
    schedule_time: float | None = None,
) -> bool:
    """One task per (image, fingerprint, generation); False when it is already queued."""
    if job_id is not None:
        svc.state.add_job_task(job_id, record.image_id, record.image_id)
    body = {"image_id": record.image_id, "job_id": job_id}
    # A job's task carries the job in its name: were it deduplicated against a task already
    # queued for the image by someone else, that task would never count for this job.
    key = record.image_id if job_id is None else f"{record.image_id}-{job_id}"
    name = task_name("img", key, svc.settings.fingerprint, record.generation)
    return svc.queue.create(
        TaskRequest(queue, name, "worker", json.dumps(body).encode(), schedule_time)
    )


def requeue(
    svc: Services, record: ImageRecord, *, source: JsonDict | None = None
) -> ImageRecord | None:
    """Back to `queued` under a new generation, so the new task's name avoids the tombstone
    of the old one. None when the record changed state meanwhile."""
    changes: dict[str, Any] = {
        "state": State.QUEUED,
        "generation": record.generation + 1,
        "fingerprint": svc.settings.fingerprint,
        "attempts": 0,
        "next_attempt_at": None,
        "error_code": None,
        "error_message": None,
        "updated_at": svc.clock.now(),
    }
    if source is not None:
        changes["source"] = {**record.source, **source}
    return svc.state.transition(record.image_id, [record.state], changes)


def submit(
    svc: Services,
    data: bytes,
    source: JsonDict,
    *,
    priority: str | None = "high",
    job_id: str | None = None,
    rerun: bool = False,
) -> tuple[ImageRecord, bool]:
    """Register and enqueue. Returns the record and whether a task was queued.

    A known image is left alone (an upload answers with its current state) unless it is done
    under another configuration; `rerun` (the CLI) renders anything not current again."""
    queue = queue_for(svc, priority, default="high")
    record, created = register(svc, data, source)
    if not created:
        if is_current(svc, record):
            _count_known(svc, job_id, record, TaskStatus.SKIPPED)
            return record, False
        stale = record.state is State.DONE
        if not (rerun or stale):
            if record.state is State.FAILED:
                _count_known(svc, job_id, record, TaskStatus.FAILED)
            return record, False
        moved = requeue(svc, record, source=source)
        if moved is None:
            raise Conflict(f"image {record.image_id} changed state, try again")
        record = moved
    enqueue_image(svc, record, queue=queue, job_id=job_id)
    return record, True


def _count_known(
    svc: Services, job_id: str | None, record: ImageRecord, status: TaskStatus
) -> None:
    if job_id is not None and svc.state.add_job_task(job_id, record.image_id, record.image_id):
        svc.state.finish_job_task(job_id, record.image_id, status)


def enqueue_ids(
    svc: Services,
    image_ids: Iterable[str],
    *,
    priority: str | None = None,
    schedule_time: float | None = None,
    job_name: str | None = None,
    reprocess: bool = False,
) -> tuple[str, int]:
    queue = queue_for(svc, priority)
    ids = list(dict.fromkeys(image_ids))
    for image_id in ids:
        if not is_image_id(image_id):
            raise InvalidRequest(f"{image_id!r} is not an image id (32 hex characters)")
    records = []
    for image_id in ids:
        record = svc.state.get_image(image_id)
        if record is None:
            raise NotFound(f"no image {image_id}")
        records.append(record)
    job_id = new_job(svc, job_name)
    for record in records:
        current = record
        stale = record.fingerprint != svc.settings.fingerprint
        if record.state is State.FAILED or (record.state is State.DONE and reprocess and stale):
            current = requeue(svc, record) or record
        enqueue_image(svc, current, queue=queue, job_id=job_id, schedule_time=schedule_time)
    return job_id, len(records)


def enqueue_stale(
    svc: Services, *, priority: str | None = None, job_name: str | None = None
) -> tuple[str, int]:
    """`{"reprocess": true}` alone: every done image rendered under another configuration."""
    stale = svc.state.list_images(state=State.DONE, not_fingerprint=svc.settings.fingerprint)
    return enqueue_ids(
        svc,
        [r.image_id for r in stale],
        priority=priority,
        job_name=job_name,
        reprocess=True,
    )


def enqueue_prefix(
    svc: Services,
    prefix: str,
    *,
    priority: str | None = None,
    schedule_time: float | None = None,
    job_name: str | None = None,
) -> tuple[str, int]:
    """One task per object under `prefix` in the uploads store; the worker hashes each."""
    if svc.uploads is None:
        raise InvalidRequest("enqueue by prefix needs an uploads store")
    queue = queue_for(svc, priority)
    objects = [blob for blob in svc.uploads.list(prefix) if blob.size > 0]
    job_id = new_job(svc, job_name)
    for blob in objects:
        _enqueue_object(svc, blob.path, queue, job_id, schedule_time)
    return job_id, len(objects)


def _enqueue_object(
    svc: Services, path: str, queue: str, job_id: str, schedule_time: float | None = None
) -> None:
    svc.state.add_job_task(job_id, path, None)
    body = {"object": path, "job_id": job_id}
    # The job id is part of the name: the same object in a later job is new work to check.
    name = task_name("obj", f"{job_id}:{path}", svc.settings.fingerprint, 0)
    svc.queue.create(TaskRequest(queue, name, "worker", json.dumps(body).encode(), schedule_time))


# ---------------------------------------------------------------- the worker


def parse_task_body(body: bytes) -> JsonDict:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("task body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("task body must be a JSON object")
    image_id = payload.get("image_id")
    obj = payload.get("object")
    if (image_id is None) == (obj is None):
        raise InvalidRequest("task body needs exactly one of 'image_id' or 'object'")
    if image_id is not None and not (isinstance(image_id, str) and is_image_id(image_id)):
        raise InvalidRequest("'image_id' must be 32 hex characters")
    if obj is not None and not isinstance(obj, str):
        raise InvalidRequest("'object' must be a string")
    job_id = payload.get("job_id")
    if job_id is not None and not isinstance(job_id, str):
        raise InvalidRequest("'job_id' must be a string")
    return payload


def process_task(svc: Services, body: bytes, ctx: TaskContext) -> Outcome:
    """Run one task. Returns an Outcome with a terminal status (ack the task) or, for a failed
    attempt that should be retried, status None: the door answers non-2xx."""
    payload = parse_task_body(body)
    job_id: str | None = payload.get("job_id")
    task_key: str = payload.get("image_id") or payload["object"]
    image_id: str | None = payload.get("image_id")
    try:
        if image_id is None:
            record = _register_object(svc, payload["object"], ctx)
        else:
            found = svc.state.get_image(image_id)
            if found is None:
                # Deleted after it was queued: nothing to do, and nothing to retry.
                return _finish(svc, job_id, task_key, TaskStatus.SKIPPED, image_id)
            record = found
        image_id = record.image_id
        status = _render(svc, record, ctx)
        return _finish(svc, job_id, task_key, status, image_id)
    except PermanentError as exc:
        if image_id is not None:
            _fail_now(svc, image_id, ctx, exc)
        return _finish(svc, job_id, task_key, TaskStatus.FAILED, image_id, error=exc)
    except Conflict as exc:
        return Outcome(None, image_id, exc)
    except PipelineError as exc:
        return _failed_attempt(svc, payload, image_id, ctx, exc)


def _register_object(svc: Services, path: str, ctx: TaskContext) -> ImageRecord:
    assert svc.uploads is not None, "object tasks need an uploads store"
    data = svc.uploads.get(path)
    try:
        imaging.check_size(len(data), svc.limits)
        record, created = register(svc, data, {"object": path})
    except PermanentError as exc:
        # No image record exists for bytes refused at the door; the dead letter keeps the
        # failure visible, named by the content's id and the object's path.
        _fail_now(svc, image_id_for(data), ctx, type(exc)(f"{path}: {exc.message}"), path)
        raise
    if not created and record.state is State.DONE and not is_current(svc, record):
        record = requeue(svc, record) or record
    return record


def _render(svc: Services, record: ImageRecord, ctx: TaskContext) -> TaskStatus:
    if is_current(svc, record):
        return TaskStatus.SKIPPED
    if record.state is State.FAILED:
        return TaskStatus.FAILED
    now = svc.clock.now()
    if record.state is State.DONE:
        # Done under another configuration or with outputs gone: render again.
        moved = requeue(svc, record)
        if moved is None:
            raise Conflict(f"image {record.image_id} changed state under this task")
        record = moved
    if record.state is State.PROCESSING and (record.started_at or 0) + svc.dispatch_deadline > now:
        raise Conflict(f"image {record.image_id} is being processed by another worker")
    # Compare-and-set on what this worker saw: of two deliveries racing here, one wins; a
    # takeover of a stale `processing` must match the dead worker's start time.
    started = svc.state.transition(
        record.image_id,
        [record.state],
        {
            "state": State.PROCESSING,
            "started_at": now,
            "updated_at": now,
            "attempts": ctx.retry_count + 1,
            "next_attempt_at": None,
        },
        match={"started_at": record.started_at, "generation": record.generation},
    )
    if started is None:
        raise Conflict(f"image {record.image_id} changed state under this task")
    data = _read_source(svc, started)
    processed = imaging.process(data, svc.settings.renditions, svc.limits)
    metadata = _write_outputs(svc, started, processed)
    done = svc.state.transition(
        record.image_id,
        [State.PROCESSING],
        {
            "state": State.DONE,
            "result": metadata,
            "error_code": None,
            "error_message": None,
            "updated_at": svc.clock.now(),
        },
    )
    # Lost the race to a twin of this task: its outputs are the same bytes, counted once.
    return TaskStatus.DONE if done is not None else TaskStatus.SKIPPED


def _read_source(svc: Services, record: ImageRecord) -> bytes:
    source = record.source
    if "path" in source:
        path = Path(source["path"])
        try:
            size = path.stat().st_size
            imaging.check_size(size, svc.limits)
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"source file {path} is gone") from None
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc.strerror}") from exc
    return svc.blobs.get(source.get("original", ORIGINALS + record.image_id))


def _write_outputs(svc: Services, record: ImageRecord, processed: imaging.Processed) -> JsonDict:
    renditions = []
    for output in processed.outputs:
        ext = imaging.EXTENSIONS[output.format]
        file_name = f"{output.name}.{ext}"
        svc.blobs.put(
            svc.output_path(record.image_id, file_name),
            output.data,
            content_type=imaging.CONTENT_TYPES[output.format],
            cache_control=CACHE_CONTROL,
        )
        renditions.append(
            {
                "name": output.name,
                "file": file_name,
                "format": output.format,
                "width": output.width,
                "height": output.height,
                "bytes": len(output.data),
            }
        )
    info = processed.info
    source_key = "path" if "path" in record.source else "object"
    source_ref = record.source.get(source_key) or record.source.get("original")
    palette = processed.palette
    metadata: JsonDict = {
        "image_id": record.image_id,
        "source": {
            source_key: source_ref,
            "format": info.format,
            "width": info.display_width,
            "height": info.display_height,
            "orientation": info.orientation,
            "bytes": record.source.get("bytes"),
        },
        "renditions": renditions,
        "palette": None
        if palette is None
        else {
            "colors": [{"hex": hex_, "share": round(share, 4)} for hex_, share in palette.colors],
            "seed": palette.seed,
            "thumbhash": palette.thumbhash,
        },
        "fingerprint": svc.settings.fingerprint,
    }
    blob = json.dumps(metadata, indent=2).encode()
    # metadata.json is written last: its presence means the outputs are complete.
    svc.blobs.put(
        svc.output_path(record.image_id, "metadata.json"),
        blob,
        content_type="application/json",
        cache_control="no-cache",
    )
    return metadata


def _finish(
    svc: Services,
    job_id: str | None,
    task_key: str,
    status: TaskStatus,
    image_id: str | None,
    *,
    error: PipelineError | None = None,
) -> Outcome:
    if job_id is not None:
        svc.state.finish_job_task(job_id, task_key, status)
    return Outcome(status, image_id, error)


def _fail_now(
    svc: Services,
    image_id: str,
    ctx: TaskContext,
    exc: PipelineError,
    source_object: str | None = None,
) -> None:
    """Permanent errors: failed at once with attempts = 1, visible among the dead letters."""
    now = svc.clock.now()
    svc.state.record_dead_letter(
        DeadLetter(
            image_id=image_id,
            task_name=ctx.name,
            error_code=exc.code,
            error_message=exc.message,
            attempts=1,
            first_attempt_at=ctx.first_attempt_at or now,
            last_attempt_at=now,
            source_object=source_object,
        )
    )


def _failed_attempt(
    svc: Services,
    payload: JsonDict,
    image_id: str | None,
    ctx: TaskContext,
    exc: PipelineError,
) -> Outcome:
    attempts = ctx.retry_count + 1
    now = svc.clock.now()
    last = attempts >= svc.settings.max_attempts
    if image_id is not None:
        changes: dict[str, Any] = {
            "state": State.QUEUED,
            "attempts": attempts,
            "error_code": exc.code,
            "error_message": exc.message,
            "updated_at": now,
            "next_attempt_at": None if last else now + backoff_delay(ctx.retry_count, svc.retry),
        }
        svc.state.transition(image_id, [State.PROCESSING, State.QUEUED], changes)
    if last:
        letter = {
            "image_id": image_id,
            "object": payload.get("object"),
            "job_id": payload.get("job_id"),
            "task_name": ctx.name,
            "attempts": attempts,
            "first_attempt_at": ctx.first_attempt_at,
            "error": {"code": exc.code, "message": exc.message},
        }
        svc.queue.create(
            TaskRequest(
                ctx.queue,
                task_name("dl", ctx.name, "deadletter", 0),
                "failure",
                json.dumps(letter).encode(),
            )
        )
    return Outcome(None, image_id, exc)


# ---------------------------------------------------------------- dead letters, sweeper


def record_failure(svc: Services, body: bytes) -> bool:
    """The failure callback: store the dead letter, mark the image failed (idempotent)."""
    try:
        payload = json.loads(body)
        error = payload["error"]
        task = str(payload["task_name"])
        attempts = int(payload["attempts"])
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidRequest(
            "failure body needs image_id, task_name, attempts, error{code,message}"
        ) from None
    image_id = payload.get("image_id")
    job_id = payload.get("job_id")
    key = image_id or payload.get("object")
    if job_id and key:
        svc.state.finish_job_task(str(job_id), str(key), TaskStatus.FAILED)
    obj = payload.get("object")
    if not image_id:
        # The object could not even be read: there is no image to mark, but keep the letter.
        image_id = f"object:{obj}"
    first = payload.get("first_attempt_at")
    return svc.state.record_dead_letter(
        DeadLetter(
            image_id=str(image_id),
            task_name=task,
            error_code=code,
            error_message=message,
            attempts=attempts,
            first_attempt_at=float(first) if first is not None else None,
            last_attempt_at=svc.clock.now(),
            source_object=None if obj is None else str(obj),
        )
    )


def sweep(svc: Services) -> dict[str, int]:
    """Re-enqueue images stuck in `processing` past the dispatch deadline plus a margin, at
    most SWEEP_LIMIT times each, then dead-letter them."""
    now = svc.clock.now()
    cutoff = now - svc.dispatch_deadline - SWEEP_MARGIN
    requeued = dead = 0
    for record in svc.state.list_images(state=State.PROCESSING, started_before=cutoff):
        if record.sweeps >= SWEEP_LIMIT:
            svc.state.record_dead_letter(
                DeadLetter(
                    image_id=record.image_id,
                    task_name=f"sweep-{record.image_id}-g{record.generation}",
                    error_code="unavailable",
                    error_message=f"stuck in processing after {SWEEP_LIMIT} re-enqueues",
                    attempts=record.attempts,
                    first_attempt_at=record.started_at,
                    last_attempt_at=now,
                )
            )
            dead += 1
            continue
        moved = svc.state.transition(
            record.image_id,
            [State.PROCESSING],
            {
                "state": State.QUEUED,
                "generation": record.generation + 1,
                "sweeps": record.sweeps + 1,
                "updated_at": now,
            },
        )
        if moved is not None:
            enqueue_image(svc, moved, queue=svc.settings.queue)
            requeued += 1
    return {"requeued": requeued, "dead_lettered": dead}


def retry_failed(svc: Services, image_ids: Iterable[str] | None = None) -> tuple[str, int]:
    """Re-enqueue dead-lettered images under a fresh generation (a fresh task name). A letter
    with no image behind it (an object task that never got that far) enqueues its object
    again; one with neither is kept, as there is nothing to retry."""
    letters = svc.state.list_dead_letters(limit=100_000)
    wanted = None if image_ids is None else set(image_ids)
    targets = sorted({d.image_id for d in letters if wanted is None or d.image_id in wanted})
    if wanted is not None and (unknown := wanted - set(targets)):
        raise NotFound(f"no dead letter for {', '.join(sorted(unknown))}")
    objects: dict[str, set[str]] = {}
    for d in letters:
        if d.source_object is not None:
            objects.setdefault(d.image_id, set()).add(d.source_object)
    job_id = new_job(svc, "retry")
    count = 0
    retried: list[str] = []
    for image_id in targets:
        record = svc.state.get_image(image_id)
        if record is None:
            if svc.uploads is None or image_id not in objects:
                continue
            for path in sorted(objects[image_id]):
                _enqueue_object(svc, path, svc.settings.queue, job_id)
                count += 1
            retried.append(image_id)
            continue
        moved = requeue(svc, record) if record.state is State.FAILED else record
        if moved is not None:
            enqueue_image(svc, moved, queue=svc.settings.queue, job_id=job_id)
            count += 1
        retried.append(image_id)
    svc.state.remove_dead_letters(retried)
    return job_id, count


# ---------------------------------------------------------------- reads and deletes


def image_view(svc: Services, image_id: str) -> JsonDict:
    record = svc.state.get_image(image_id)
    if record is None:
        raise NotFound(f"no image {image_id}")
    view: JsonDict = {
        "image_id": record.image_id,
        "status": record.state.value,
        "attempts": record.attempts,
        "next_attempt_at": record.next_attempt_at,
        "error": None
        if record.error_code is None
        else {"code": record.error_code, "message": record.error_message},
        "fingerprint": record.fingerprint,
        "stale": record.fingerprint != svc.settings.fingerprint,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "renditions": [],
        "palette": None,
    }
    if record.result:
        view["source"] = record.result.get("source")
        view["renditions"] = [
            {**r, "url": svc.blobs.url(svc.output_path(record.image_id, r["file"]))}
            for r in record.result.get("renditions", [])
        ]
        view["palette"] = record.result.get("palette")
    return view


def delete_image(svc: Services, image_id: str) -> None:
    record = svc.state.get_image(image_id)
    if record is None:
        raise NotFound(f"no image {image_id}")
    svc.blobs.delete_prefix(svc.output_path(image_id, ""))
    if "path" not in record.source:
        svc.blobs.delete_prefix(ORIGINALS + image_id)
    svc.state.delete_image(image_id)


def status_view(svc: Services) -> JsonDict:
    queues = [
        {"name": q.name, "state": q.state, "depth": q.depth, "in_flight": q.in_flight}
        for q in svc.queue.stats()
    ]
    return {
        "queues": queues,
        "images": svc.state.count_by_state(),
        "recent_failures": [d.to_json() for d in svc.state.list_dead_letters(limit=10)],
    }
