"""The sweeper (scheduled; every minute in `imgpipe serve`): the repairs that keep "nothing
lost" true whatever step failed.

- `processing` past the dispatch deadline plus a margin: finished if its metadata.json says
  so (the worker died after writing it), else re-enqueued, at most SWEEP_LIMIT times, then
  dead-lettered;
- `queued` past due by more than a margin with no live task (the create after a register
  failed, the queue gave up on a last attempt that never reached the worker, a crash between
  the state and the queue databases, a failure callback that never succeeded): dead-lettered
  when its last attempt was used (the same letter, by task name, the failure callback would
  have stored), else re-enqueued like a stuck image;
- whatever it dead-letters closes its job task;
- superseded output files past their grace period are removed;
- tombstones of deleted images: outputs a late worker wrote are removed again, then the
  record goes."""

from __future__ import annotations

import logging
from typing import Any

from imgpipe.model import DeadLetter, ImageRecord, State, TaskStatus
from imgpipe.pipeline import events, jobs, outputs
from imgpipe.pipeline.failures import is_last_attempt
from imgpipe.pipeline.intake import enqueue_image
from imgpipe.pipeline.reconcile import finish_from_metadata
from imgpipe.pipeline.services import QUEUED_MARGIN, SWEEP_LIMIT, SWEEP_MARGIN, Services

log = logging.getLogger("imgpipe.sweeper")


def sweep(svc: Services) -> dict[str, int]:
    now = svc.clock.now()
    counts = dict.fromkeys(
        ("requeued", "dead_lettered", "reconciled", "cleaned", "purged", "raced"), 0
    )
    stuck_before = now - svc.dispatch_deadline - SWEEP_MARGIN
    for record in svc.state.list_images(state=State.PROCESSING, started_before=stuck_before):
        if finish_from_metadata(svc, record):
            counts["reconciled"] += 1
        else:
            counts[_requeue_or_bury(svc, record, "stuck in processing")] += 1
    for record in svc.state.list_images(state=State.QUEUED, updated_before=now - QUEUED_MARGIN):
        if record.next_attempt_at is not None and record.next_attempt_at > now - QUEUED_MARGIN:
            continue
        queue = record.task_queue or svc.settings.queue
        if record.task_name is not None and svc.queue.exists(queue, record.task_name):
            continue
        used_up = record.error_code is not None and is_last_attempt(
            svc, queue, record.attempts, record.first_attempt_at
        )
        if used_up and record.task_name is not None:
            counts["dead_lettered"] += _bury(
                svc,
                record,
                record.task_name,
                code=record.error_code or "unavailable",
                message=record.error_message or "failed",
                attempts=record.attempts,
            )
        else:
            counts[_requeue_or_bury(svc, record, "queued with no task")] += 1
    for record in svc.state.list_images(cleanup_before=now):
        counts["cleaned"] += outputs.remove_superseded(svc, record)
        svc.state.transition(
            record.image_id,
            [record.state],
            {"superseded": None, "cleanup_at": None},
            match={"cleanup_at": record.cleanup_at},
        )
    for record in svc.state.list_images(state=State.DELETED, updated_before=stuck_before):
        outputs.remove_all(svc, record.image_id)
        counts["purged"] += int(svc.state.purge_image(record.image_id))
    return counts


def _requeue_or_bury(svc: Services, record: ImageRecord, reason: str) -> str:
    if record.sweeps >= SWEEP_LIMIT:
        name = f"sweep-{record.image_id}-g{record.generation}"
        message = f"{reason} after {SWEEP_LIMIT} re-enqueues"
        _bury(svc, record, name, code="unavailable", message=message, attempts=record.attempts)
        return "dead_lettered"
    changes: dict[str, Any] = {
        "state": State.QUEUED,
        "generation": record.generation + 1,
        "sweeps": record.sweeps + 1,
        "attempts": 0,
        "next_attempt_at": None,
        "updated_at": svc.clock.now(),
    }
    moved = svc.state.transition(
        record.image_id,
        [record.state],
        changes,
        match={"generation": record.generation, "started_at": record.started_at},
    )
    if moved is None:
        return "raced"  # it moved on meanwhile: nothing to repair
    queue = record.task_queue or svc.settings.queue
    enqueue_image(svc, moved, queue=queue, job_id=record.job_id, job_key=record.job_key)
    log.info("re-enqueued %s (%s)", record.image_id, reason)
    return "requeued"


def _bury(
    svc: Services, record: ImageRecord, name: str, *, code: str, message: str, attempts: int
) -> int:
    now = svc.clock.now()
    svc.state.record_dead_letter(
        DeadLetter(
            image_id=record.image_id,
            task_name=name,
            error_code=code,
            error_message=message,
            attempts=attempts,
            first_attempt_at=record.first_attempt_at or record.started_at,
            last_attempt_at=now,
            generation=record.generation,
            started_at=record.started_at,
            job_id=record.job_id,
        )
    )
    after = svc.state.get_image(record.image_id)
    if after is None or after.state is not State.FAILED or after.generation != record.generation:
        return 0
    events.image_event(svc, after)
    if record.job_id is not None:
        key = record.job_key or record.image_id
        jobs.finish_task(svc, record.job_id, key, TaskStatus.FAILED)
    return 1
