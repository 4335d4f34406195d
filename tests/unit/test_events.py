"""Events through the real local queue: one per transition even when a task runs twice, a
sink that is down gets them again with backoff, and after the last attempt the event waits
among the dead letters until `failed retry` delivers it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from imgpipe import pipeline, tasks
from imgpipe.errors import TransientError
from localharness import Harness

HOOK = {"IMGPIPE_WEBHOOK_URL": "http://127.0.0.1:9/hook", "IMGPIPE_WEBHOOK_SECRET": "s"}


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.down = 0  # answer this many sends with an outage

    def send(self, body: bytes, event_type: str, subject: str) -> None:
        if self.down:
            self.down -= 1
            raise TransientError("receiver down (injected)")
        event = json.loads(body)
        assert (event["type"], event["subject"]) == (event_type, subject)
        self.events.append(event)


def _harness(tmp_path: Path, failures: int = 0) -> tuple[Harness, ListSink]:
    h = Harness(tmp_path, failures=failures, **HOOK)
    sink = ListSink()
    h.svc = dataclasses.replace(h.svc, events=(sink,))
    return h, sink


def test_a_task_delivered_twice_emits_done_once(tmp_path: Path) -> None:
    h, sink = _harness(tmp_path)
    image_id = h.submit()
    h.drain()
    record = h.svc.state.get_image(image_id)
    assert record is not None and record.task_name is not None
    # The same task again (Cloud Tasks delivers at least once): it re-emits, same id.
    headers = {"x-cloudtasks-taskname": record.task_name, "x-cloudtasks-queuename": "high"}
    body = json.dumps({"image_id": image_id}).encode()
    assert tasks.process(h.svc, headers, body)[1]["status"] == "skipped"
    h.drain()
    done = [e for e in sink.events if e["type"] == "imgpipe.image.v1.done"]
    assert len(done) == 1 and done[0]["id"] == f"img-{image_id}-done-g{record.generation}"


def test_failed_then_retried_then_done_each_once(tmp_path: Path) -> None:
    h, sink = _harness(tmp_path, failures=10**6)
    image_id = h.submit()
    h.drain()
    assert [e["type"] for e in sink.events] == ["imgpipe.image.v1.failed"]
    assert sink.events[0]["data"]["error"]["code"] == "unavailable"  # type: ignore[index]
    h.blobs.heal()
    pipeline.retry_failed(h.svc)
    h.drain()
    types = [e["type"] for e in sink.events]
    assert types == ["imgpipe.image.v1.failed", "imgpipe.image.v1.done", "imgpipe.job.v1.completed"]
    assert sink.events[1]["subject"] == image_id


def test_an_undeliverable_event_waits_in_the_dead_letters(tmp_path: Path) -> None:
    h, sink = _harness(tmp_path)
    sink.down = 5  # every attempt of the queue's five
    image_id = h.submit()
    h.drain()
    assert sink.events == []
    [letter] = h.svc.state.list_dead_letters()
    assert letter.payload is not None and image_id in letter.payload
    pipeline.retry_failed(h.svc)
    h.drain()
    assert [e["subject"] for e in sink.events] == [image_id]
    assert h.svc.state.list_dead_letters() == []
