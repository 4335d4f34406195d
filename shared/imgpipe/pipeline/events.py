"""Events, so that other systems need not poll: one CloudEvent 1.0 (structured JSON) per image
that ends `done` or `failed`, per delete and per finished job, delivered through the queue (a
task per delivery on the normal queue: rate limits, retries and the dead letter apply).

Invariant: an event's id is stable for its transition (`img-<id>-done-g<generation>`, ...)
and names its delivery task, so emitting it again (every path that may have lost an emit
re-emits it: a retried task, a second DELETE) never delivers it twice while the queue
remembers the name; receivers deduplicate by id after that."""

from __future__ import annotations

import datetime as dt
import json
import logging

from imgpipe import safejson
from imgpipe.errors import InvalidRequest
from imgpipe.model import ImageRecord, JsonDict, State
from imgpipe.pipeline.services import Services, task_name
from imgpipe.ports import TaskRequest

log = logging.getLogger("imgpipe.events")
DONE, FAILED = "imgpipe.image.v1.done", "imgpipe.image.v1.failed"
DELETED, JOB_COMPLETED = "imgpipe.image.v1.deleted", "imgpipe.job.v1.completed"


def emit(svc: Services, event_type: str, subject: str, data: JsonDict, event_id: str) -> None:
    """Queue the delivery; raises `TransientError` when the queue cannot take it, so the caller
    answers non-2xx and its own retry emits again."""
    if not svc.emits_events:
        return
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "imgpipe",
        "type": event_type,
        "subject": subject,
        "time": dt.datetime.fromtimestamp(svc.clock.now(), dt.UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    name = task_name("ev", event_id, "event", 0)
    body = json.dumps(event, sort_keys=True).encode()
    svc.queue.create(TaskRequest(svc.settings.queue, name, "event", body))


def image_event(svc: Services, record: ImageRecord) -> None:
    from imgpipe.pipeline.views import image_view  # noqa: PLC0415 (views builds on events)

    kind = {State.DONE: (DONE, "done"), State.FAILED: (FAILED, "failed")}.get(record.state)
    if kind is None or not svc.emits_events:
        return
    event_type, word = kind
    data = image_view(svc, record.image_id)
    emit(
        svc, event_type, record.image_id, data, f"img-{record.image_id}-{word}-g{record.generation}"
    )


def deleted_event(svc: Services, record: ImageRecord) -> None:
    data = {"image_id": record.image_id, "status": "deleted"}
    emit(svc, DELETED, record.image_id, data, f"img-{record.image_id}-deleted-g{record.generation}")


def job_event_if_complete(svc: Services, job_id: str) -> None:
    if not svc.emits_events:
        return
    job = svc.state.get_job(job_id, now=svc.clock.now())
    if job is None or job.listing or not job.total_tasks or job.finished < job.total_tasks:
        return
    emit(svc, JOB_COMPLETED, job_id, job.to_json(svc.clock.now()), f"job-{job_id}-completed")


def deliver(svc: Services, body: bytes) -> JsonDict:
    """The event task's target: send to every sink; raises `TransientError` when one fails."""
    event = safejson.loads_object(body, "event")
    event_type, subject = event.get("type"), event.get("subject")
    if not isinstance(event_type, str) or not isinstance(subject, str) or "id" not in event:
        raise InvalidRequest("an event task needs a CloudEvent with id, type and subject")
    for sink in svc.events:
        sink.send(body, event_type, subject)
    return {"event_id": event["id"], "delivered": len(svc.events)}
