"""Registering images and queueing their tasks: uploads, finalize events, enqueue by ids,
stale images, and by prefix (the listing itself is walked by page tasks, see `listing`).

Invariant: an image is written `queued` together with the name of the task that carries it
*before* that task is created; a create that fails leaves a repairable state (the client's
retry creates the same task again, and the sweeper re-enqueues a `queued` image whose task
is gone)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from typing import Any

from imgpipe import imaging
from imgpipe.errors import Conflict, InvalidRequest, NotFound
from imgpipe.model import ImageRecord, JsonDict, State, TaskStatus, image_id_for, is_image_id
from imgpipe.pipeline import jobs
from imgpipe.pipeline.services import (
    MAX_SCHEDULE_AHEAD,
    ORIGINALS,
    Services,
    queue_for,
    task_name,
)
from imgpipe.ports import TaskRequest

# Everything a re-enqueue under a new generation resets.
_FRESH_ATTEMPT: dict[str, Any] = {
    "attempts": 0,
    "next_attempt_at": None,
    "error_code": None,
    "error_message": None,
    "started_at": None,
    "started_by": None,
    "first_attempt_at": None,
    "task_name": None,
    "task_queue": None,
    "job_id": None,
    "job_key": None,
}


def check_schedule(svc: Services, schedule_time: object) -> float | None:
    """A finite epoch time at most 30 days ahead (Cloud Tasks' limit); checked before anything
    is written, so a refused request changes nothing."""
    if schedule_time is None:
        return None
    if isinstance(schedule_time, bool) or not isinstance(schedule_time, int | float):
        raise InvalidRequest("'schedule_time' must be epoch seconds")
    when = float(schedule_time)
    if not math.isfinite(when) or when < 0:
        raise InvalidRequest("'schedule_time' must be a finite epoch time")
    if when > svc.clock.now() + MAX_SCHEDULE_AHEAD:
        raise InvalidRequest("'schedule_time' must be at most 30 days ahead")
    return when


def new_job(svc: Services, name: str | None = None, *, listing: bool = False) -> str:
    job_id = uuid.uuid4().hex[:20]
    svc.state.create_job(job_id, name, svc.clock.now(), listing=listing)
    return job_id


def register(svc: Services, data: bytes, source: JsonDict) -> tuple[ImageRecord, bool]:
    """Validate the bytes (format, size, pixels: permanent errors raise here, before anything
    is stored), keep the original and record the image as queued. Idempotent by content; the
    same bytes uploaded after a delete are a new image on the tombstone."""
    info = imaging.probe(data, svc.limits)
    image_id = image_id_for(data)
    if "path" not in source:
        svc.originals.put(ORIGINALS + image_id, data, content_type=f"image/{info.format}")
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
    stored, created = svc.state.insert_image(record)
    if created or stored.state is not State.DELETED:
        return stored, created
    revived = svc.state.transition(
        image_id,
        [State.DELETED],
        {
            **_FRESH_ATTEMPT,
            "state": State.QUEUED,
            "generation": stored.generation + 1,
            "source": record.source,
            "fingerprint": record.fingerprint,
            "created_at": now,
            "updated_at": now,
            "sweeps": 0,
            "result": None,
            "superseded": None,
            "cleanup_at": None,
        },
        match={"generation": stored.generation},
    )
    if revived is None:
        raise Conflict(f"image {image_id} changed state, try again")
    return revived, True


def is_current(svc: Services, record: ImageRecord) -> bool:
    """Done under this configuration, with its outputs in place."""
    return (
        record.state is State.DONE
        and record.fingerprint == svc.settings.fingerprint
        and svc.blobs.exists(svc.output_path(record.image_id, "metadata.json"))
    )


def image_task_name(svc: Services, record: ImageRecord, job_id: str | None) -> str:
    # A job's task carries the job in its name: were it deduplicated against a task already
    # queued for the image by someone else, that task would never count for this job.
    key = record.image_id if job_id is None else f"{record.image_id}-{job_id}"
    return task_name("img", key, svc.settings.fingerprint, record.generation)


def enqueue_image(
    svc: Services,
    record: ImageRecord,
    *,
    queue: str,
    job_id: str | None = None,
    job_key: str | None = None,
    schedule_time: float | None = None,
) -> bool:
    """One task per (image, fingerprint, generation); False when it is already queued."""
    job_key = job_key or record.image_id
    if job_id is not None:
        svc.state.add_job_task(job_id, job_key, record.image_id)
    name = image_task_name(svc, record, job_id)
    carried = (record.task_name, record.task_queue, record.job_id)
    if record.state is State.QUEUED and carried != (name, queue, job_id):
        svc.state.transition(
            record.image_id,
            [State.QUEUED],
            {
                "task_name": name,
                "task_queue": queue,
                "job_id": job_id,
                "job_key": job_key if job_id else None,
            },
            match={"generation": record.generation},
        )
    body = {"image_id": record.image_id, "job_id": job_id}
    return svc.queue.create(
        TaskRequest(queue, name, "worker", json.dumps(body).encode(), schedule_time)
    )


def requeue(
    svc: Services, record: ImageRecord, *, source: JsonDict | None = None
) -> ImageRecord | None:
    """Back to `queued` under a new generation, so the new task's name avoids the tombstone
    of the old one; an operator's or user's action, so the sweep count starts again. None
    when the record changed meanwhile."""
    changes: dict[str, Any] = {
        **_FRESH_ATTEMPT,
        "state": State.QUEUED,
        "generation": record.generation + 1,
        "fingerprint": svc.settings.fingerprint,
        "sweeps": 0,
        "updated_at": svc.clock.now(),
    }
    if source is not None:
        changes["source"] = {**record.source, **source}
    return svc.state.transition(
        record.image_id, [record.state], changes, match={"generation": record.generation}
    )


def submit(
    svc: Services,
    data: bytes,
    source: JsonDict,
    *,
    priority: str | None = "high",
    job_id: str | None = None,
    rerun: bool = False,
) -> tuple[ImageRecord, bool]:
    """Register and enqueue. Returns the record and whether it is queued.

    A known image is left alone (an upload answers with its current state) unless it is done
    under another configuration, or `queued`: then its task is created again (same name, so a
    live task is not duplicated), since a create that failed after the register leaves a
    queued image with no task, and this may be the client's retry or Eventarc's redelivery.
    `rerun` (the CLI) renders anything not current again."""
    queue = queue_for(svc, priority, default="high")
    record, created = register(svc, data, source)
    if not created:
        if is_current(svc, record):
            _count_known(svc, job_id, record, TaskStatus.SKIPPED)
            return record, False
        if record.state is State.QUEUED:
            if job_id is None:
                enqueue_image(
                    svc,
                    record,
                    queue=record.task_queue or queue,
                    job_id=record.job_id,
                    job_key=record.job_key,
                )
            else:
                enqueue_image(svc, record, queue=queue, job_id=job_id)
            return record, True
        stale = record.state is State.DONE
        if not (rerun or stale) or record.state is State.PROCESSING:
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
        jobs.finish_task(svc, job_id, record.image_id, status)


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
    schedule_time = check_schedule(svc, schedule_time)
    ids = list(dict.fromkeys(image_ids))
    for image_id in ids:
        if not is_image_id(image_id):
            raise InvalidRequest("every image id must be 32 hex characters")
    records = []
    for image_id in ids:
        record = svc.state.get_image(image_id)
        if record is None or record.state is State.DELETED:
            raise NotFound(f"no image {image_id}")
        records.append(record)
    job_id = new_job(svc, job_name)
    for record in records:
        current = record
        # Named ids with `reprocess`: render them again even when current.
        if record.state is State.FAILED or (record.state is State.DONE and reprocess):
            current = requeue(svc, record) or record
        enqueue_image(svc, current, queue=queue, job_id=job_id, schedule_time=schedule_time)
    return job_id, len(records)


def enqueue_stale(
    svc: Services, *, priority: str | None = None, job_name: str | None = None
) -> tuple[str, int]:
    """`{"reprocess": true}` alone: every done image rendered under another configuration."""
    stale = svc.state.list_images(
        state=State.DONE, not_fingerprint=svc.settings.fingerprint, limit=100_000
    )
    return enqueue_ids(
        svc,
        [r.image_id for r in stale],
        priority=priority,
        job_name=job_name,
        reprocess=True,
    )


def enqueue_object(
    svc: Services, path: str, queue: str, job_id: str, schedule_time: float | None = None
) -> bool:
    svc.state.add_job_task(job_id, path, None)
    body = {"object": path, "job_id": job_id}
    # The job id is part of the name: the same object in a later job is new work to check.
    name = task_name("obj", f"{job_id}:{path}", svc.settings.fingerprint, 0)
    return svc.queue.create(
        TaskRequest(queue, name, "worker", json.dumps(body).encode(), schedule_time)
    )


def enqueue_prefix(
    svc: Services,
    prefix: str,
    *,
    everything: bool = False,
    priority: str | None = None,
    schedule_time: float | None = None,
    job_name: str | None = None,
) -> str:
    """Answers at once with the job id: the listing is walked page by page by tasks of its own
    (`listing.run_page`), so a bucket of millions of objects is a backfill, not a request."""
    if svc.uploads is None:
        raise InvalidRequest("enqueue by prefix needs an uploads store")
    if not prefix and not everything:
        raise InvalidRequest("an empty 'prefix' enqueues every upload: send \"all\": true too")
    if "\x00" in prefix:
        raise InvalidRequest("'prefix' must not contain NUL")
    queue = queue_for(svc, priority)
    schedule_time = check_schedule(svc, schedule_time)
    job_id = new_job(svc, job_name, listing=True)
    create_page_task(svc, job_id, prefix, page=0, token=None, queue=queue, at=schedule_time)
    return job_id


def create_page_task(
    svc: Services,
    job_id: str,
    prefix: str,
    *,
    page: int,
    token: str | None,
    queue: str,
    at: float | None,
) -> bool:
    body = {
        "list": prefix,
        "job_id": job_id,
        "page": page,
        "token": token,
        "queue": queue,
        "schedule_time": at,
    }
    name = task_name("page", f"{job_id}:{page}", svc.settings.fingerprint, 0)
    return svc.queue.create(TaskRequest(queue, name, "worker", json.dumps(body).encode(), at))
