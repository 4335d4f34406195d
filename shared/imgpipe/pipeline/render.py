"""The worker: run one task (an image, an object of the uploads store, or a page of a listing).

Invariants enforced here:
- starting is a compare-and-set on what this worker saw (state, generation, start time); a
  later attempt of the *same* task may take over a `processing` image at once (the queue
  only retries a task once its previous attempt is over: it crashed, was released or timed
  out), another task may not until the dispatch deadline has passed;
- finishing is a compare-and-set on this attempt's generation and start time;
- a delete wins: when the image was deleted while this attempt rendered it, the attempt
  removes what it wrote instead of finishing."""

from __future__ import annotations

from pathlib import Path

from imgpipe import imaging, metrics, safejson
from imgpipe.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermanentError,
    PipelineError,
    TransientError,
)
from imgpipe.model import (
    ImageRecord,
    JsonDict,
    State,
    TaskStatus,
    image_id_for,
    is_image_id,
    object_letter_key,
)
from imgpipe.pipeline import events, failures, jobs, listing, outputs
from imgpipe.pipeline.intake import is_current, register, requeue
from imgpipe.pipeline.services import (
    ORIGINALS,
    Attempt,
    Outcome,
    Services,
    TaskContext,
    check_job_id,
)


def parse_task_body(body: bytes) -> JsonDict:
    payload = safejson.loads_object(body, "task body")
    kinds = [k for k in ("image_id", "object", "list") if payload.get(k) is not None]
    if len(kinds) != 1:
        raise InvalidRequest("task body needs exactly one of 'image_id', 'object' or 'list'")
    image_id = payload.get("image_id")
    if image_id is not None and not (isinstance(image_id, str) and is_image_id(image_id)):
        raise InvalidRequest("'image_id' must be 32 hex characters")
    obj = payload.get("object")
    if obj is not None and (not isinstance(obj, str) or not obj or "\x00" in obj):
        raise InvalidRequest("'object' must be an object name")
    check_job_id(payload.get("job_id"))
    return payload


def process_task(svc: Services, body: bytes, ctx: TaskContext) -> Outcome:
    """Run one task. Returns an Outcome with a terminal status (ack the task) or, for a failed
    attempt that should be retried, status None: the door answers non-2xx."""
    payload = parse_task_body(body)
    if payload.get("list") is not None:
        try:
            return listing.run_page(svc, payload)
        except PermanentError as exc:
            return Outcome(TaskStatus.FAILED, None, exc)
        except PipelineError as exc:
            return Outcome(None, None, exc)
    job_id: str | None = payload.get("job_id")
    task_key: str = payload.get("image_id") or payload["object"]
    image_id: str | None = payload.get("image_id")
    attempt = Attempt()
    try:
        if image_id is None:
            record = _register_object(svc, payload["object"], ctx, job_id)
        else:
            found = svc.state.get_image(image_id)
            if found is None or found.state is State.DELETED:
                # Deleted after it was queued: nothing to do, and nothing to retry.
                return _finish(svc, job_id, task_key, TaskStatus.SKIPPED, image_id)
            record = found
        image_id = record.image_id
        status = _render(svc, record, ctx, job_id=job_id, task_key=task_key, attempt=attempt)
        return _finish(svc, job_id, task_key, status, image_id)
    except PermanentError as exc:
        if image_id is not None:
            failures.fail_now(svc, image_id, ctx, exc, started=attempt.started, job_id=job_id)
        return _finish(svc, job_id, task_key, TaskStatus.FAILED, image_id, error=exc)
    except Conflict as exc:
        return Outcome(None, image_id, exc)
    except PipelineError as exc:
        return failures.failed_attempt(svc, payload, image_id, ctx, exc, started=attempt.started)


def _register_object(svc: Services, path: str, ctx: TaskContext, job_id: str | None) -> ImageRecord:
    assert svc.uploads is not None, "object tasks need an uploads store"
    data: bytes | None = None
    try:
        size = svc.uploads.size(path)
        if size is None:
            raise NotFound(f"no object {path}")
        # From the object's metadata, before any byte is read: a multi-GB object never
        # reaches memory.
        imaging.check_size(size, svc.limits)
        data = svc.uploads.get(path, max_bytes=svc.limits.max_bytes)
        record, created = register(svc, data, {"object": path})
    except PermanentError as exc:
        # No image record exists for bytes refused at the door; the dead letter keeps the
        # failure visible, named by the content's id (or the object's, unread) and its path.
        key = image_id_for(data) if data is not None else object_letter_key(path)
        failures.fail_now(
            svc,
            key,
            ctx,
            type(exc)(f"{path}: {exc.message}"),
            source_object=path,
            job_id=job_id,
        )
        raise
    if not created and record.state is State.DONE and not is_current(svc, record):
        record = requeue(svc, record) or record
    return record


def _may_take_over(svc: Services, record: ImageRecord, ctx: TaskContext, now: float) -> bool:
    if (record.started_at or 0.0) + svc.dispatch_deadline <= now:
        return True
    return record.started_by == ctx.name and record.attempts <= ctx.retry_count


def _render(
    svc: Services,
    record: ImageRecord,
    ctx: TaskContext,
    *,
    job_id: str | None,
    task_key: str,
    attempt: Attempt,
) -> TaskStatus:
    if is_current(svc, record):
        if record.started_by == ctx.name:
            events.image_event(svc, record)  # this task did it: its emit may have been lost
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
    if record.state is State.PROCESSING and not _may_take_over(svc, record, ctx, now):
        raise Conflict(f"image {record.image_id} is being processed by another worker")
    same_task = record.task_name == ctx.name and ctx.retry_count > 0
    started = svc.state.transition(
        record.image_id,
        [record.state],
        {
            "state": State.PROCESSING,
            "started_at": now,
            "updated_at": now,
            "attempts": ctx.retry_count + 1,
            "next_attempt_at": None,
            "started_by": ctx.name,
            "task_name": ctx.name,
            "task_queue": ctx.queue,
            "job_id": job_id,
            "job_key": task_key if job_id is not None else None,
            "first_attempt_at": (record.first_attempt_at or now) if same_task else now,
        },
        match={"started_at": record.started_at, "generation": record.generation},
    )
    if started is None:
        raise Conflict(f"image {record.image_id} changed state under this task")
    attempt.started = started
    data = _read_source(svc, started)
    processed = imaging.process(
        data,
        svc.settings.renditions,
        svc.limits,
        threads=svc.settings.render_threads,
        focus=started.focus,
        encoding=imaging.Encoding.from_settings(svc.settings),
    )
    metadata, replaced = outputs.write(svc, started, processed)
    superseded = sorted(set(started.superseded or []) | set(replaced))
    keep = svc.immutable_outputs and bool(superseded)
    done = svc.state.transition(
        record.image_id,
        [State.PROCESSING],
        {
            "state": State.DONE,
            "result": metadata,
            "error_code": None,
            "error_message": None,
            "updated_at": svc.clock.now(),
            "superseded": superseded if keep else None,
            "cleanup_at": svc.clock.now() + svc.superseded_grace if keep else None,
        },
        match={"generation": started.generation, "started_at": started.started_at},
    )
    if done is None:
        current = svc.state.get_image(record.image_id)
        if current is None or current.state is State.DELETED:
            outputs.remove_all(svc, record.image_id)  # the delete wins
        # Otherwise a newer attempt took over: its outputs are the same bytes, counted once.
        return TaskStatus.SKIPPED
    if not svc.immutable_outputs and replaced:
        outputs.remove_superseded(svc, done.evolve(superseded=replaced))
    metrics.record_render(processed)
    events.image_event(svc, done)
    return TaskStatus.DONE


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
    original = source.get("original", ORIGINALS + record.image_id)
    return svc.originals.get(original, max_bytes=svc.limits.max_bytes)


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
        jobs.finish_task(svc, job_id, task_key, status)
    return Outcome(status, image_id, error)
