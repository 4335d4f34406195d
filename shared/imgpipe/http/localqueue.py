"""Connects the local queue to the task logic: in-process for `imgpipe process`, over HTTP
for `imgpipe serve`."""

from __future__ import annotations

import logging

from imgpipe import tasks
from imgpipe.auth import lower_keys
from imgpipe.local.dispatcher import Dispatcher, Handler
from imgpipe.wiring import LocalRuntime

log = logging.getLogger("imgpipe.worker")


def in_process_handlers(runtime: LocalRuntime) -> Dispatcher:
    svc = runtime.services

    def worker(headers: dict[str, str], body: bytes) -> int:
        status, answer = tasks.process(svc, lower_keys(headers.items()), body)
        if status >= 300:
            log.info("task %s: %s", headers.get("X-CloudTasks-TaskName"), answer)
        return status

    def failure(headers: dict[str, str], body: bytes) -> int:
        del headers
        return tasks.record_failure(svc, body)[0]

    def event(headers: dict[str, str], body: bytes) -> int:
        return tasks.deliver_event(svc, lower_keys(headers.items()), body)[0]

    targets: dict[str, Handler | str] = {"worker": worker, "failure": failure, "event": event}
    return Dispatcher(runtime.queue, svc.clock, targets)


def http_dispatcher(runtime: LocalRuntime, base_url: str, secret: str) -> Dispatcher:
    targets: dict[str, Handler | str] = {
        "worker": f"{base_url}/tasks/process",
        "failure": f"{base_url}/tasks/failed",
        "event": f"{base_url}/tasks/event",
    }
    return Dispatcher(runtime.queue, runtime.services.clock, targets, secret)
