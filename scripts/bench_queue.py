"""Throughput of the local task queue (SQLite + dispatcher).

    PYTHONPATH=shared python scripts/bench_queue.py [--tasks 5000]

(a) in-process no-op handler, rate limits lifted      target >= 2,000 dispatches/s
(b) HTTP POST to a no-op endpoint on 127.0.0.1        target >=   500 dispatches/s
(c) measured rate against max_dispatches_per_second   target error <= 5 %
"""

from __future__ import annotations

import argparse
import math
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from imgpipe.clock import SystemClock
from imgpipe.local.dispatcher import Dispatcher, Handler
from imgpipe.local.taskqueue import SqliteTaskQueue
from imgpipe.ports import TaskRequest
from imgpipe.queueconfig import QueueConfig, RateLimits, RetryConfig

BODY = b'{"image_id": "0123456789abcdef0123456789abcdef"}'


def _queue(tmp: Path, name: str, rate: RateLimits) -> SqliteTaskQueue:
    cfg = QueueConfig(name, rate, RetryConfig(max_attempts=5, min_backoff=1))
    return SqliteTaskQueue(tmp / f"{name}.sqlite", SystemClock(), [cfg])


def _fill(queue: SqliteTaskQueue, name: str, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        queue.create(TaskRequest(name, f"{i:08x}-task", "worker", BODY))
    return n / (time.perf_counter() - start)


def _drain(queue: SqliteTaskQueue, target: Handler | str, workers: int) -> tuple[int, float]:
    dispatcher = Dispatcher(queue, SystemClock(), {"worker": target}, "s3cret", max_workers=workers)
    start = time.perf_counter()
    done = dispatcher.run_until_idle(timeout=300)
    elapsed = time.perf_counter() - start
    dispatcher.stop()
    return done, done / elapsed


def bench_in_process(tmp: Path, n: int) -> float:
    queue = _queue(tmp, "inproc", RateLimits(math.inf, 5000, 5000))
    creates = _fill(queue, "inproc", n)
    done, rate = _drain(queue, lambda headers, body: 200, workers=8)
    print(f"(a) in-process: {done} dispatches, {rate:,.0f}/s   (creates: {creates:,.0f}/s)")
    return rate


class _NoOp(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def bench_http(tmp: Path, n: int) -> float:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoOp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        queue = _queue(tmp, "http", RateLimits(math.inf, 5000, 5000))
        _fill(queue, "http", n)
        url = f"http://127.0.0.1:{server.server_address[1]}/tasks/process"
        done, rate = _drain(queue, url, workers=16)
    finally:
        server.shutdown()
    print(f"(b) HTTP 127.0.0.1: {done} dispatches, {rate:,.0f}/s")
    return rate


def bench_rate(tmp: Path, target: float, seconds: float) -> float:
    burst = 10
    queue = _queue(tmp, "rate", RateLimits(target, burst, 100))
    _fill(queue, "rate", int(target * (seconds + 2)) + burst)
    dispatcher = Dispatcher(queue, SystemClock(), {"worker": lambda h, b: 200})
    dispatcher.start()
    # Skip the first second: the initial burst is the bucket's capacity, not its rate.
    time.sleep(1.0)
    first, t0 = dispatcher.dispatched, time.perf_counter()
    time.sleep(seconds)
    last, t1 = dispatcher.dispatched, time.perf_counter()
    dispatcher.stop()
    measured = (last - first) / (t1 - t0)
    error = abs(measured - target) / target
    print(
        f"(c) rate limit {target:g}/s: measured {measured:.1f}/s over {t1 - t0:.1f} s, "
        f"error {error:.1%}"
    )
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a = bench_in_process(Path(tmp), args.tasks)
        b = bench_http(Path(tmp), args.tasks)
        c = bench_rate(Path(tmp), args.rate, args.seconds)
    ok = a >= 2000 and b >= 500 and c <= 0.05
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
