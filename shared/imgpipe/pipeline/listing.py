"""The page tasks of an enqueue by prefix: each lists one page of the uploads store, enqueues
one task per object on it (concurrently: one RPC each) and then the task of the next page.

Invariant: a retried page adds nothing twice. Job task records are keyed by the object's
path and task names by (job, path), so a second run of a page finds both already there; the
next page's task is named by (job, page number)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imgpipe.errors import InvalidRequest
from imgpipe.model import JsonDict, TaskStatus
from imgpipe.pipeline import events
from imgpipe.pipeline.intake import create_page_task, enqueue_object
from imgpipe.pipeline.services import Outcome, Services

FAN_OUT = 16  # task creates in flight at once per page


def parse_page(payload: JsonDict) -> tuple[str, int, str | None, str, float | None]:
    prefix, page, token = payload["list"], payload.get("page", 0), payload.get("token")
    queue, at = payload.get("queue"), payload.get("schedule_time")
    if not isinstance(prefix, str):
        raise InvalidRequest("'list' must be a prefix string")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise InvalidRequest("'page' must be a page number")
    if token is not None and not isinstance(token, str):
        raise InvalidRequest("'token' must be a string")
    if not isinstance(queue, str):
        raise InvalidRequest("'queue' must be a queue name")
    if at is not None and not isinstance(at, int | float):
        raise InvalidRequest("'schedule_time' must be epoch seconds")
    return prefix, page, token, queue, None if at is None else float(at)


def run_page(svc: Services, payload: JsonDict) -> Outcome:
    prefix, page, token, queue, at = parse_page(payload)
    job_id = payload.get("job_id")
    if not isinstance(job_id, str) or svc.uploads is None:
        raise InvalidRequest("a page task needs its job and an uploads store")
    listed = svc.uploads.list_page(prefix, token, svc.page_size)
    objects = [b.path for b in listed.items if b.size > 0 and not b.path.endswith("/")]

    def one(path: str) -> Any:
        return enqueue_object(svc, path, queue, job_id, at)

    with ThreadPoolExecutor(min(FAN_OUT, max(1, len(objects)))) as pool:
        list(pool.map(one, objects))  # re-raises the first failure: the page is retried
    if listed.next_token is not None:
        create_page_task(
            svc, job_id, prefix, page=page + 1, token=listed.next_token, queue=queue, at=at
        )
    else:
        svc.state.finish_listing(job_id)
        events.job_event_if_complete(svc, job_id)  # every task may have finished already
    return Outcome(TaskStatus.DONE, None)
