"""Failed attempts, dead letters and their retry.

Invariants enforced here:
- the last attempt is known from the queue's own retry settings (`TaskQueue.retry_config`),
  never from a second copy that can drift;
- every failure path is a compare-and-set on the attempt (generation and start time): a late
  answer or dead letter of an older attempt never touches a newer one;
- on the last attempt the dead-letter task is created *before* the image is moved: if that
  create fails, the image is left where the sweeper repairs it (and the sweeper records the
  same letter, keyed by the same task name, when the failure callback never comes);
- `failed retry` removes exactly the letters it re-enqueued."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from imgpipe import safejson
from imgpipe.errors import InvalidRequest, NotFound, PipelineError
from imgpipe.model import (
    DeadLetter,
    ImageRecord,
    JsonDict,
    State,
    TaskStatus,
    event_letter_key,
    object_letter_key,
)
from imgpipe.pipeline import events, jobs
from imgpipe.pipeline.intake import enqueue_image, enqueue_object, new_job, requeue
from imgpipe.pipeline.services import Outcome, Services, TaskContext, task_name
from imgpipe.ports import TaskRequest
from imgpipe.queueconfig import backoff_delay, should_retry

log = logging.getLogger("imgpipe.pipeline")


def fail_now(
    svc: Services,
    letter_key: str,
    ctx: TaskContext,
    exc: PipelineError,
    *,
    started: ImageRecord | None = None,
    source_object: str | None = None,
    job_id: str | None = None,
) -> None:
    """Permanent errors: failed at once, visible among the dead letters."""
    now = svc.clock.now()
    _record_then_emit(
        svc,
        DeadLetter(
            image_id=letter_key,
            task_name=ctx.name,
            error_code=exc.code,
            error_message=exc.message,
            attempts=ctx.retry_count + 1,
            first_attempt_at=(started.first_attempt_at if started else None) or now,
            last_attempt_at=now,
            source_object=source_object,
            generation=started.generation if started else None,
            started_at=started.started_at if started else None,
            job_id=job_id,
        ),
    )


def _record_then_emit(svc: Services, letter: DeadLetter) -> bool:
    created = svc.state.record_dead_letter(letter)
    record = svc.state.get_image(letter.image_id)
    applies = letter.generation is None or (
        record is not None and record.generation == letter.generation
    )
    if record is not None and record.state is State.FAILED and applies:
        events.image_event(svc, record)  # also when the letter existed: a lost emit again
    return created


def create_dead_letter_task(svc: Services, ctx: TaskContext, letter: JsonDict) -> bool:
    """The task that records `letter` through the failure callback; named by the failed task,
    so a retried last attempt does not record it twice."""
    name = task_name("dl", ctx.name, "deadletter", 0)
    body = json.dumps(letter).encode()
    return svc.queue.create(TaskRequest(ctx.queue, name, "failure", body))


def is_last_attempt(svc: Services, queue: str, attempts: int, first_at: float | None) -> bool:
    now = svc.clock.now()
    try:
        retry = svc.queue.retry_config(queue)
    except PipelineError:
        # Unknown: assume the queue retries. Were this its last attempt, the image is left
        # `queued` with no task, which the sweeper repairs.
        log.warning("cannot read the retry settings of queue %s", queue, exc_info=True)
        return False
    return not should_retry(attempts, first_at or now, now, retry)


def failed_attempt(
    svc: Services,
    payload: JsonDict,
    image_id: str | None,
    ctx: TaskContext,
    exc: PipelineError,
    *,
    started: ImageRecord | None,
) -> Outcome:
    attempts = ctx.retry_count + 1
    now = svc.clock.now()
    first = started.first_attempt_at if started else ctx.first_attempt_at
    last = is_last_attempt(svc, ctx.queue, attempts, first)
    if last:
        obj = payload.get("object")
        job_id = payload.get("job_id")
        letter = {
            "image_id": image_id,
            "object": obj,
            "job_id": job_id,
            "job_key": (obj or image_id) if job_id else None,
            "task_name": ctx.name,
            "attempts": attempts,
            "first_attempt_at": first,
            "generation": started.generation if started else None,
            "started_at": started.started_at if started else None,
            "error": {"code": exc.code, "message": exc.message},
        }
        try:
            create_dead_letter_task(svc, ctx, letter)
        except PipelineError:
            log.warning("cannot create the dead-letter task of %s", ctx.name, exc_info=True)
    if started is not None and image_id is not None:
        retry_at = None
        if not last:
            try:
                retry_at = now + backoff_delay(ctx.retry_count, svc.queue.retry_config(ctx.queue))
            except PipelineError:
                retry_at = now
        changes: dict[str, Any] = {
            "state": State.QUEUED,
            "attempts": attempts,
            "error_code": exc.code,
            "error_message": exc.message,
            "updated_at": now,
            "next_attempt_at": retry_at,
        }
        svc.state.transition(
            image_id,
            [State.PROCESSING],
            changes,
            match={"generation": started.generation, "started_at": started.started_at},
        )
    return Outcome(None, image_id, exc)


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{name}' must be a number")
    return float(value)


def record_failure(svc: Services, body: bytes) -> bool:
    """The failure callback: store the dead letter, mark the image failed (idempotent, and only
    while the image is still at the attempt the letter is about)."""
    payload = safejson.loads_object(body, "failure body")
    try:
        error = payload["error"]
        task = str(payload["task_name"])
        attempts = int(payload["attempts"])
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(
            "failure body needs image_id, task_name, attempts, error{code,message}"
        ) from None
    image_id, obj = payload.get("image_id"), payload.get("object")
    event_id = payload.get("event")
    if image_id is None and obj is None and not isinstance(event_id, str):
        raise InvalidRequest("failure body needs 'image_id', 'object' or 'event'")
    generation = payload.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        raise InvalidRequest("'generation' must be an integer")
    if image_id:
        key = str(image_id)
    elif obj is not None:
        key = object_letter_key(str(obj))
    else:
        key = event_letter_key(str(event_id))
    first = _number(payload.get("first_attempt_at"), "first_attempt_at")
    job_id = payload.get("job_id")
    created = _record_then_emit(
        svc,
        DeadLetter(
            image_id=key,
            task_name=task,
            error_code=code,
            error_message=message,
            attempts=attempts,
            first_attempt_at=first,
            last_attempt_at=svc.clock.now(),
            source_object=None if obj is None else str(obj),
            generation=generation,
            started_at=_number(payload.get("started_at"), "started_at"),
            job_id=None if job_id is None else str(job_id),
            payload=payload.get("payload") if isinstance(payload.get("payload"), str) else None,
        ),
    )
    job_key = payload.get("job_key") or obj or image_id
    if job_id and job_key:
        record = svc.state.get_image(key) if image_id else None
        # A newer attempt of the image counts for the job itself.
        if record is None or record.state is State.FAILED:
            jobs.finish_task(svc, str(job_id), str(job_key), TaskStatus.FAILED)
    return created


def retry_failed(svc: Services, image_ids: Iterable[str] | None = None) -> tuple[str, int]:
    """Re-enqueue dead-lettered images under a fresh generation (a fresh task name), and remove
    exactly the letters that were re-enqueued: an image that fails again meanwhile keeps its
    new letter. A letter with no image behind it (an object task that never got that far)
    enqueues its object again; one with neither is kept, as there is nothing to retry."""
    letters = svc.state.list_dead_letters(limit=100_000)
    wanted = None if image_ids is None else set(image_ids)
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        if wanted is None or letter.image_id in wanted:
            groups.setdefault(letter.image_id, []).append(letter)
    if wanted is not None and (unknown := wanted - set(groups)):
        raise NotFound(f"no dead letter for {len(unknown)} of the given ids")
    job_id = new_job(svc, "retry")
    count = 0
    for key in sorted(groups):
        group = groups[key]
        payloads = [d.payload for d in group if d.payload is not None]
        if payloads:
            for payload in payloads:  # an event that was never delivered: deliver it again
                body = payload.encode()
                name = task_name("ev", f"{key}:{svc.clock.now()}", "retry", 0)
                svc.queue.create(TaskRequest(svc.settings.queue, name, "event", body))
                count += 1
            svc.state.remove_dead_letters([d.task_name for d in group])
            continue
        record = svc.state.get_image(key)
        if record is None or record.state is State.DELETED:
            paths = sorted({d.source_object for d in group if d.source_object is not None})
            if svc.uploads is None or not paths:
                continue
            for path in paths:
                enqueue_object(svc, path, svc.settings.queue, job_id)
                count += 1
        elif record.state is State.FAILED:
            moved = requeue(svc, record)
            if moved is None:
                continue  # changed meanwhile: its letters stay for the next retry
            enqueue_image(svc, moved, queue=svc.settings.queue, job_id=job_id)
            count += 1
        elif record.state in (State.QUEUED, State.PROCESSING):
            enqueue_image(svc, record, queue=svc.settings.queue, job_id=job_id)
            count += 1
        # A letter of an image that is done since is stale: removed, nothing to retry.
        svc.state.remove_dead_letters([d.task_name for d in group])
    return job_id, count


def event_failed(svc: Services, ctx: TaskContext, body: bytes, exc: PipelineError) -> None:
    """A failed delivery: on its last attempt, the event goes to the dead letters (through the
    failure task, so recording it is itself retried)."""
    if not is_last_attempt(svc, ctx.queue, ctx.retry_count + 1, None):
        return
    try:
        event_id = str(safejson.loads_object(body, "event").get("id"))
    except InvalidRequest:
        return
    letter = {
        "event": event_id,
        "payload": body.decode(),
        "task_name": ctx.name,
        "attempts": ctx.retry_count + 1,
        "error": {"code": exc.code, "message": exc.message},
    }
    create_dead_letter_task(svc, ctx, letter)
