"""The task endpoints' logic, shared by every transport that delivers a task (HTTP in
`imgpipe serve` and Cloud Functions, in-process calls in `imgpipe process`): read the
X-CloudTasks-* headers, run the pipeline, answer with a status and a JSON body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgpipe import pipeline
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
    try:
        ctx = context_from_headers(headers, svc.settings.queue)
        outcome = pipeline.process_task(svc, body, ctx)
    except PipelineError as exc:
        return _error(exc)
    if outcome.status is None:
        return _error(outcome.error or Internal("task failed"))
    answer: dict[str, Any] = {"image_id": outcome.image_id, "status": outcome.status.value}
    if outcome.status is TaskStatus.FAILED and outcome.error is not None:
        answer["error"] = outcome.error.to_body()["error"]
    return 200, answer


def record_failure(svc: pipeline.Services, body: bytes) -> Answer:
    try:
        created = pipeline.record_failure(svc, body)
    except PipelineError as exc:
        return _error(exc)
    return 200, {"recorded": True, "new": created}
