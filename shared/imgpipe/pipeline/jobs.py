"""Job task records: each finishes once (pending -> terminal), dated for the job's ETA; the
job's `completed` event goes out when its last task finishes."""

from __future__ import annotations

from imgpipe.model import TaskStatus
from imgpipe.pipeline import events
from imgpipe.pipeline.services import Services


def finish_task(svc: Services, job_id: str, task_key: str, status: TaskStatus) -> bool:
    changed = svc.state.finish_job_task(job_id, task_key, status, at=svc.clock.now())
    # Checked even when this call changed nothing: a retry after a lost emit emits again.
    events.job_event_if_complete(svc, job_id)
    return changed
