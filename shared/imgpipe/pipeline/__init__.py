"""The pipeline steps, free of any framework: register and enqueue (`intake`), walk a listing
(`listing`), run one task (`render`, `outputs`), fail and dead-letter (`failures`), repair
(`sweeper`, `reconcile`), and the read views and deletes (`views`). Every door (CLI, local
HTTP server, Cloud Functions) calls these with the adapters it picked from Settings; each
module states the invariants it enforces."""

from imgpipe.pipeline.events import deliver as deliver_event
from imgpipe.pipeline.failures import event_failed, record_failure, retry_failed
from imgpipe.pipeline.intake import (
    check_schedule,
    enqueue_ids,
    enqueue_image,
    enqueue_prefix,
    enqueue_stale,
    is_current,
    new_job,
    register,
    requeue,
    submit,
)
from imgpipe.pipeline.reconcile import reconcile
from imgpipe.pipeline.render import parse_task_body, process_task
from imgpipe.pipeline.services import (
    ORIGINALS,
    SWEEP_LIMIT,
    SWEEP_MARGIN,
    Outcome,
    Services,
    TaskContext,
    check_job_id,
    queue_for,
    task_name,
)
from imgpipe.pipeline.sweeper import sweep
from imgpipe.pipeline.views import (
    best_rendition,
    check_focus,
    delete_image,
    image_view,
    list_images,
    set_focus,
    status_view,
)

__all__ = [
    "ORIGINALS",
    "SWEEP_LIMIT",
    "SWEEP_MARGIN",
    "Outcome",
    "Services",
    "TaskContext",
    "best_rendition",
    "check_focus",
    "check_job_id",
    "check_schedule",
    "delete_image",
    "deliver_event",
    "enqueue_ids",
    "enqueue_image",
    "enqueue_prefix",
    "enqueue_stale",
    "event_failed",
    "image_view",
    "is_current",
    "list_images",
    "new_job",
    "parse_task_body",
    "process_task",
    "queue_for",
    "reconcile",
    "record_failure",
    "register",
    "requeue",
    "retry_failed",
    "set_focus",
    "status_view",
    "submit",
    "sweep",
    "task_name",
]
