"""The dispatcher end to end: real SQLite queue, real threads, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imgpipe import queueconfig
from imgpipe.clock import FakeClock, SystemClock
from imgpipe.local.dispatcher import Dispatcher, HttpTarget, retry_after
from imgpipe.local.taskqueue import Finished, SqliteTaskQueue
from imgpipe.ports import TaskRequest
from imgpipe.queueconfig import QueueConfig, RateLimits, RetryConfig

T0 = 1_700_000_000.0
RETRY = RetryConfig(max_attempts=3, min_backoff=10, max_backoff=300, max_doublings=4)


def _config(
    name: str = "q", *, concurrency: int = 100, deadline: float = 600.0, rate: float = math.inf
) -> QueueConfig:
    return QueueConfig(name, RateLimits(rate, 100, concurrency), RETRY, deadline)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_queue(tmp_path: Path, clock: FakeClock) -> Callable[..., SqliteTaskQueue]:
    def make(*configs: QueueConfig) -> SqliteTaskQueue:
        return SqliteTaskQueue(tmp_path / "queue.sqlite", clock, configs or [_config()])

    return make


def _create(queue: SqliteTaskQueue, name: str, q: str = "q", target: str = "worker") -> None:
    assert queue.create(TaskRequest(q, name, target, b'{"image_id": "abc"}'))


@dataclass
class Recorder:
    """An in-process handler answering from a script of statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.calls.append((headers, body))
            return self.statuses.pop(0) if self.statuses else 200


# -- in-process transport -----------------------------------------------------------------------


def test_in_process_dispatch_sends_cloud_tasks_headers(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    _create(queue, "abc-1")
    handler = Recorder()
    dispatcher = Dispatcher(queue, clock, {"worker": handler}, "s3cret")
    assert dispatcher.run_until_idle(timeout=10) == 1
    [(headers, body)] = handler.calls
    assert body == b'{"image_id": "abc"}'
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "Google-Cloud-Tasks",
        "X-CloudTasks-QueueName": "q",
        "X-CloudTasks-TaskName": "abc-1",
        "X-CloudTasks-TaskRetryCount": "0",
        "X-CloudTasks-TaskExecutionCount": "0",
        "X-CloudTasks-TaskETA": "1700000000.000000",
        "X-Imgpipe-Task-Secret": "s3cret",
    }
    assert queue.stats()[0].depth == 0
    dispatcher.stop()


def test_retries_carry_counts_and_last_attempt_is_reported(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    _create(queue, "fails")
    _create(queue, "recovers")
    statuses = {"fails": [500, 500, 500], "recovers": [503]}
    counts: list[tuple[str, str, str]] = []

    def handler(headers: dict[str, str], body: bytes) -> int:
        name = headers["X-CloudTasks-TaskName"]
        retry, executions = (
            headers["X-CloudTasks-TaskRetryCount"],
            headers["X-CloudTasks-TaskExecutionCount"],
        )
        counts.append((name, retry, executions))
        return statuses[name].pop(0) if statuses[name] else 200

    finished: list[Finished] = []
    dispatcher = Dispatcher(queue, clock, {"worker": handler}, on_finished=finished.append)
    assert dispatcher.run_until_idle(timeout=10) == 2
    clock.advance(10)
    assert dispatcher.run_until_idle(timeout=10) == 2
    clock.advance(20)
    assert dispatcher.run_until_idle(timeout=10) == 1
    assert sorted(counts) == [
        ("fails", "0", "0"),
        ("fails", "1", "1"),
        ("fails", "2", "2"),
        ("recovers", "0", "0"),
        ("recovers", "1", "1"),
    ]
    by_name = {f.name: f for f in finished}
    assert not by_name["recovers"].gave_up
    assert by_name["fails"].gave_up and by_name["fails"].attempts == 3
    dispatcher.stop()


def test_raising_handler_is_a_500_and_unknown_target_a_failure(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    _create(queue, "boom")
    _create(queue, "orphan", target="nowhere")

    def handler(headers: dict[str, str], body: bytes) -> int:
        raise RuntimeError("kaput")

    dispatcher = Dispatcher(queue, clock, {"worker": handler})
    assert dispatcher.run_until_idle(timeout=10) == 2
    boom, orphan = queue.get_task("q", "boom"), queue.get_task("q", "orphan")
    assert boom is not None and (boom.last_status, boom.response_count) == (500, 1)
    assert boom.last_error == "RuntimeError: kaput"
    assert orphan is not None and orphan.last_status is None
    assert orphan.last_error == "no handler for target 'nowhere'"
    dispatcher.stop()


def test_concurrency_cap_is_never_exceeded_with_real_threads(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue(_config(concurrency=3))
    for i in range(24):
        _create(queue, f"t{i}")
    lock = threading.Lock()
    running, peak = 0, 0

    def handler(headers: dict[str, str], body: bytes) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return 200

    # More threads than the cap: the queue's lease count is what must hold the line.
    dispatcher = Dispatcher(queue, clock, {"worker": handler}, max_workers=10)
    assert dispatcher.run_until_idle(timeout=30) == 24
    assert peak == 3
    dispatcher.stop()


def test_background_dispatcher_wakes_on_create_and_on_clock_advance(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    handler = Recorder()
    # A long poll interval: only the wake-ups can make this test fast.
    dispatcher = Dispatcher(queue, clock, {"worker": handler}, poll_interval=30)
    dispatcher.start()
    try:
        _create(queue, "now")
        queue.create(TaskRequest("q", "later", "worker", b"{}", schedule_time=T0 + 3600))
        _wait_for(lambda: len(handler.calls) == 1)
        clock.advance(3600)
        _wait_for(lambda: len(handler.calls) == 2)
    finally:
        dispatcher.stop()
    assert [h["X-CloudTasks-TaskName"] for h, _ in handler.calls] == ["now", "later"]


def test_killed_dispatcher_loses_nothing(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue(_config(deadline=60))
    _create(queue, "t")
    release = threading.Event()

    def stuck(headers: dict[str, str], body: bytes) -> int:
        release.wait(10)
        return 200

    first = Dispatcher(queue, clock, {"worker": stuck})
    first.start()
    _wait_for(lambda: queue.stats()[0].in_flight == 1)
    first.stop(wait=False)  # as if killed: the lease is never completed
    handler = Recorder()
    second = Dispatcher(queue, clock, {"worker": handler})
    assert second.run_until_idle(timeout=10) == 0
    clock.advance(60 + 10)  # deadline, then the first backoff
    assert second.run_until_idle(timeout=10) == 1
    [(headers, _)] = handler.calls
    assert headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert queue.stats()[0].depth == 0
    release.set()
    second.stop()


def test_run_until_idle_can_wait_for_scheduled_tasks(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    queue.create(TaskRequest("q", "later", "worker", b"{}", schedule_time=T0 + 5))
    dispatcher = Dispatcher(queue, clock, {"worker": Recorder()}, poll_interval=0.01)
    assert dispatcher.run_until_idle(timeout=10) == 0
    with pytest.raises(TimeoutError):
        dispatcher.run_until_idle(wait_for_scheduled=True, timeout=0.05)
    clock.advance(5)
    assert dispatcher.run_until_idle(wait_for_scheduled=True, timeout=10) == 1
    dispatcher.stop()


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# -- HTTP transport -----------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    requests: list[tuple[str, dict[str, str], bytes, int]]  # path, headers, body, client port
    statuses: list[int]
    delay: list[float]
    retry_after: list[str] = field(default_factory=list)  # one per non-2xx answer, in order


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("", [], [], [0.0])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.requests.append(
                    (self.path, dict(self.headers.items()), body, self.client_address[1])
                )
                status = state.statuses.pop(0) if state.statuses else 200
                wait = state.retry_after.pop(0) if status >= 300 and state.retry_after else None
            time.sleep(state.delay[0])
            payload = b"" if status < 300 else b'{"error": {"code": "unavailable"}}'
            self.send_response(status)
            if wait is not None:
                self.send_header("Retry-After", wait)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/tasks/process"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_http_dispatch_delivers_headers_and_body(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock, server: Server
) -> None:
    queue = make_queue()
    _create(queue, "img-1")
    dispatcher = Dispatcher(queue, clock, {"worker": server.url}, "s3cret")
    assert dispatcher.run_until_idle(timeout=10) == 1
    [(path, headers, body, _)] = server.requests
    assert path == "/tasks/process"
    assert body == b'{"image_id": "abc"}'
    assert headers["Content-Type"] == "application/json"
    assert headers["X-CloudTasks-QueueName"] == "q"
    assert headers["X-CloudTasks-TaskName"] == "img-1"
    assert headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert float(headers["X-CloudTasks-TaskETA"]) == T0
    assert headers["X-Imgpipe-Task-Secret"] == "s3cret"
    assert queue.stats()[0].depth == 0
    dispatcher.stop()


def test_http_non_2xx_is_retried(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock, server: Server
) -> None:
    queue = make_queue()
    _create(queue, "img-1")
    server.statuses[:] = [429, 503]
    dispatcher = Dispatcher(queue, clock, {"worker": server.url})
    assert dispatcher.run_until_idle(timeout=10) == 1
    task = queue.get_task("q", "img-1")
    assert task is not None and task.last_status == 429
    assert task.last_error is not None and "unavailable" in task.last_error
    clock.advance(10)
    dispatcher.run_until_idle(timeout=10)
    clock.advance(20)
    dispatcher.run_until_idle(timeout=10)
    counts = [
        (h["X-CloudTasks-TaskRetryCount"], h["X-CloudTasks-TaskExecutionCount"])
        for _, h, _, _ in server.requests
    ]
    assert counts == [("0", "0"), ("1", "1"), ("2", "2")]
    assert queue.stats()[0].depth == 0
    dispatcher.stop()


def test_http_retry_after_holds_the_queue_and_retries_say_why(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock, server: Server
) -> None:
    queue = make_queue()
    _create(queue, "img-1")
    server.statuses[:] = [503]
    server.retry_after[:] = ["90"]
    dispatcher = Dispatcher(queue, clock, {"worker": server.url})
    assert dispatcher.run_until_idle(timeout=10) == 1
    _create(queue, "img-2")
    assert dispatcher.run_until_idle(timeout=10) == 0  # the whole queue waits
    clock.advance(89)
    assert dispatcher.run_until_idle(timeout=10) == 0
    clock.advance(1)
    assert dispatcher.run_until_idle(timeout=10) == 2
    retry = next(h for _, h, _, _ in server.requests[1:] if h["X-CloudTasks-TaskName"] == "img-1")
    assert retry["X-CloudTasks-TaskRetryCount"] == "1"
    assert retry["X-CloudTasks-TaskPreviousResponse"] == "503"
    assert retry["X-CloudTasks-TaskRetryReason"] == "HTTP 503"
    first = server.requests[0][1]
    assert "X-CloudTasks-TaskPreviousResponse" not in first
    assert "X-CloudTasks-TaskRetryReason" not in first
    assert queue.stats()[0].depth == 0
    dispatcher.stop()


def test_retry_after_header_values() -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert retry_after("120", now) == 120.0
    assert retry_after(" 0 ", now) == 0.0
    assert retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now) == 120.0
    assert retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # already past
    assert retry_after(None, now) is None
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None


def test_http_timeout_counts_as_a_failed_attempt(
    make_queue: Callable[..., SqliteTaskQueue],
    clock: FakeClock,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cloud Tasks' deadline is at least 15 s; lower the floor so the test takes a fraction of it.
    monkeypatch.setattr(queueconfig, "MIN_DISPATCH_DEADLINE", 0.1)
    queue = make_queue(_config(deadline=0.2))
    _create(queue, "slow")
    server.delay[0] = 1.0
    dispatcher = Dispatcher(queue, clock, {"worker": server.url})
    started = time.monotonic()
    assert dispatcher.run_until_idle(timeout=10) == 1
    assert time.monotonic() - started < 0.9
    task = queue.get_task("q", "slow")
    assert task is not None and task.attempts == 1 and task.response_count == 0
    assert task.last_status is None and task.last_error is not None
    assert "timed out" in task.last_error
    dispatcher.stop()


def test_http_connection_refused_is_a_failed_attempt(
    make_queue: Callable[..., SqliteTaskQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    _create(queue, "t")
    dispatcher = Dispatcher(queue, clock, {"worker": "http://127.0.0.1:9/nothing"})
    assert dispatcher.run_until_idle(timeout=10) == 1
    task = queue.get_task("q", "t")
    assert task is not None and task.last_status is None
    assert task.last_error is not None and "Connection" in task.last_error
    dispatcher.stop()


def test_http_connection_is_kept_alive_per_thread(server: Server) -> None:
    target = HttpTarget(server.url)
    for _ in range(5):
        assert target({"Content-Type": "application/json"}, b"{}", 5.0) == (200, "", None)
    assert len({port for *_, port in server.requests}) == 1


def test_http_target_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError, match="target URL"):
        HttpTarget("ftp://example.com/x")


_HOLDER = """
import sys, threading, time
from imgpipe.clock import SystemClock
from imgpipe.local.dispatcher import Dispatcher
from imgpipe.local.taskqueue import SqliteTaskQueue
from imgpipe.queueconfig import QueueConfig, RateLimits, RetryConfig
cfg = QueueConfig("q", RateLimits(50, 100, 1), RetryConfig(5, 0, 1, 2, 1), 600)
queue = SqliteTaskQueue(sys.argv[1], SystemClock(), [cfg])
def stuck(headers, body):
    print("leased", flush=True)
    threading.Event().wait()
Dispatcher(queue, SystemClock(), {"worker": stuck}).start()
threading.Event().wait()
"""


def test_a_restart_releases_the_leases_of_a_killed_process_at_once(tmp_path: Path) -> None:
    """The dead process's lease held the only concurrency slot until its 600 s deadline; now
    the next dispatcher releases it on start, and the task runs after its 1 s backoff."""
    path = tmp_path / "queue.sqlite"
    cfg = QueueConfig("q", RateLimits(50, 100, 1), RetryConfig(5, 0, 1, 2, 1), 600)
    queue = SqliteTaskQueue(path, SystemClock(), [cfg])
    _create(queue, "t")
    _create(queue, "u")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "leased"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert queue.stats()[0].in_flight == 1  # the dead process still holds the slot
    handler = Recorder()
    killed_at = time.monotonic()
    restarted = Dispatcher(queue, SystemClock(), {"worker": handler})
    assert restarted.run_until_idle(wait_for_scheduled=True, timeout=20) == 2
    assert time.monotonic() - killed_at < 1 + 5  # min_backoff + 5 s, not the deadline
    retried = [h for h, _ in handler.calls if h["X-CloudTasks-TaskRetryCount"] == "1"]
    assert len(retried) == 1 and retried[0]["X-CloudTasks-TaskRetryReason"] == "dispatcher died"
    restarted.stop()
