"""The task endpoints' logic, shared by every transport that delivers a task (HTTP in
`imgpipe serve` and Cloud Functions, in-process calls in `imgpipe process`): read the
X-CloudTasks-* headers, run the pipeline, answer with a status and a JSON body."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from imgpipe import metrics, pipeline
from imgpipe.errors import Internal, InvalidRequest, PipelineError
from imgpipe.model import TaskStatus

Answer = tuple[int, dict[str, Any]]


def context_from_headers(headers: Mapping[str, str], default_queue: str) -> pipeline.TaskContext:
    """`headers` with lower-case names (`auth.lower_keys`)."""

    def number(name: str) -> int:
        raw = headers.get(name) or "0"
        try:
            return max(0, int(raw))
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer") from None

    return pipeline.TaskContext(
        name=headers.get("x-cloudtasks-taskname") or "direct",
        queue=headers.get("x-cloudtasks-queuename") or default_queue,
        retry_count=number("x-cloudtasks-taskretrycount"),
        execution_count=number("x-cloudtasks-taskexecutioncount"),
    )


def _error(exc: PipelineError) -> Answer:
    return exc.status, exc.to_body()


def process(svc: pipeline.Services, headers: Mapping[str, str], body: bytes) -> Answer:
    """2xx acks the task (done, skipped, or failed for good); anything else asks the queue
    to try again."""
    started = time.monotonic()
    queue = headers.get("x-cloudtasks-queuename") or svc.settings.queue
    try:
        ctx = context_from_headers(headers, svc.settings.queue)
        outcome = pipeline.process_task(svc, body, ctx)
    except PipelineError as exc:
        metrics.record_task(queue, "retried", time.monotonic() - started)
        return _error(exc)
    outcome_name = "retried" if outcome.status is None else outcome.status.value
    metrics.record_task(queue, outcome_name, time.monotonic() - started)
    if outcome.status is None:
        return _error(outcome.error or Internal("task failed"))
    answer: dict[str, Any] = {"image_id": outcome.image_id, "status": outcome.status.value}
    if outcome.status is TaskStatus.FAILED and outcome.error is not None:
        answer["error"] = outcome.error.to_body()["error"]
    return 200, answer


def deliver_event(svc: pipeline.Services, headers: Mapping[str, str], body: bytes) -> Answer:
    """An event task: every sink, or a failed attempt; after the last one the event goes to
    the dead letters (with its body, so `failed retry` delivers it again)."""
    try:
        ctx = context_from_headers(headers, svc.settings.queue)
        return 200, pipeline.deliver_event(svc, body)
    except InvalidRequest as exc:
        return _error(exc)  # malformed: retrying cannot help, but the queue decides
    except PipelineError as exc:
        pipeline.event_failed(svc, ctx, body, exc)
        return _error(exc)


def record_failure(svc: pipeline.Services, body: bytes) -> Answer:
    try:
        created = pipeline.record_failure(svc, body)
    except PipelineError as exc:
        return _error(exc)
    # `status` is what the failure function's log line carries: the log-based metric of dead
    # letters counts "dead_letter" lines, not the redeliveries of one already stored.
    return 200, {"recorded": True, "new": created, "status": "dead_letter" if created else "known"}
