"""The task targets (Cloud Tasks and the local queue POST here): the task's own auth is
checked before its body is read."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, g, request

from imgpipe import pipeline, tasks
from imgpipe.auth import TaskAuth, lower_keys
from imgpipe.http.common import MAX_TASK_BODY, json_response


def tasks_blueprint(get_svc: Callable[[], pipeline.Services], auth: TaskAuth) -> Blueprint:
    bp = Blueprint("tasks", __name__)

    @bp.before_request
    def _check_task_auth() -> None:
        # Nothing of the body is read (or logged) before the caller is known to be the queue.
        auth.check(lower_keys(request.headers.items()))
        g.task_authenticated = True
        if (request.content_length or 0) <= MAX_TASK_BODY:
            request.get_data(cache=True)  # small references: kept for the request's log line

    @bp.post("/tasks/process")
    def process() -> Response:
        status, body = tasks.process(
            get_svc(), lower_keys(request.headers.items()), request.get_data(cache=False)
        )
        return json_response(body, status)

    @bp.post("/tasks/event")
    def event() -> Response:
        status, body = tasks.deliver_event(
            get_svc(), lower_keys(request.headers.items()), request.get_data(cache=False)
        )
        return json_response(body, status)

    @bp.post("/tasks/failed")
    def failed() -> Response:
        status, body = tasks.record_failure(get_svc(), request.get_data(cache=False))
        return json_response(body, status)

    return bp
