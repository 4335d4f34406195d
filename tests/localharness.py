"""The pipeline through the real SQLite queue, state store and file blobs, with an injected
clock, each port behind a `Faulty` wrapper (tests/faults.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from corpus import corpus_dir
from faults import Faulty
from imgpipe import pipeline, tasks
from imgpipe.clock import FakeClock
from imgpipe.local.blobs import FileBlobStore
from imgpipe.local.dispatcher import Dispatcher, Handler
from imgpipe.settings import Settings
from imgpipe.wiring import local_runtime

PHOTO = "baseline_mongolia.jpeg"


class Harness:
    """The real SQLite queue, state store and file stores, each behind a `Faulty` wrapper;
    `failures` makes the first N output writes fail like an unreachable bucket."""

    def __init__(self, tmp: Path, failures: int = 0, **env: str) -> None:
        self.clock = FakeClock()
        settings = Settings.from_env({"IMGPIPE_DATA_DIR": str(tmp / "data"), **env})
        runtime = local_runtime(settings, clock=self.clock)
        self.queue = runtime.queue
        self.files = runtime.services.blobs
        assert isinstance(self.files, FileBlobStore)
        self.blobs = Faulty(self.files)
        if failures:
            self.blobs.fail("put", failures)
        self.state = Faulty(runtime.services.state)
        self.tasks = Faulty(runtime.services.queue)
        self.svc = dataclasses.replace(
            runtime.services, blobs=self.blobs, state=self.state, queue=self.tasks
        )
        self.calls: list[int] = []
        # Answer a dispatch at the door without running it (a Cloud Run 429, a failure
        # function that is down): return a status, or None to let it through.
        self.worker_gate: Callable[[dict[str, str]], int | None] = lambda headers: None
        self.failure_gate: Callable[[dict[str, str]], int | None] = lambda headers: None

        def worker(headers: dict[str, str], body: bytes) -> int:
            refused = self.worker_gate(headers)
            if refused is not None:
                self.calls.append(refused)
                return refused
            lowered = {k.lower(): v for k, v in headers.items()}
            status = tasks.process(self.svc, lowered, body)[0]
            self.calls.append(status)
            return status

        def failure(headers: dict[str, str], body: bytes) -> int:
            refused = self.failure_gate(headers)
            if refused is not None:
                return refused
            return tasks.record_failure(self.svc, body)[0]

        def event(headers: dict[str, str], body: bytes) -> int:
            lowered = {k.lower(): v for k, v in headers.items()}
            return tasks.deliver_event(self.svc, lowered, body)[0]

        targets: dict[str, Handler | str] = {"worker": worker, "failure": failure, "event": event}
        self.dispatcher = Dispatcher(self.queue, self.clock, targets, poll_interval=0.01)

    def drain(self, rounds: int = 20) -> None:
        """Dispatch what is due, then jump the clock to the next retry, until nothing is left."""
        for _ in range(rounds):
            self.dispatcher.run_until_idle(timeout=60)
            due = [self.queue.next_due(q) for q in ("high", "normal")]
            times = [d.dispatch_at for d in due if d is not None]
            if not times:
                return
            self.clock.advance(max(0.0, min(times) - self.clock.now()) + 0.001)
        raise AssertionError("queue did not drain")

    def submit(self, name: str = PHOTO) -> str:
        data = (corpus_dir() / name).read_bytes()
        record, queued = pipeline.submit(self.svc, data, {"upload": name})
        assert queued
        return record.image_id

    def outputs(self, image_id: str) -> list[str]:
        folder = self.files.root / "processed" / image_id
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
