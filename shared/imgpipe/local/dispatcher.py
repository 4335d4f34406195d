"""Delivers leased tasks to their targets the way Cloud Tasks does: a POST with the
X-CloudTasks-* headers, any 2xx = done, anything else (or no answer within the dispatch
deadline) = a failed attempt retried by the queue.

Targets are either in-process handlers `(headers, body) -> status` or URLs (HTTP POST over a
keep-alive connection per worker thread). The dispatcher holds no state of its own: a killed
process leaves leases behind, which expire and are retried by whoever dispatches next."""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import http.client
import logging
import math
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imgpipe.clock import WakingClock
from imgpipe.local.taskqueue import Finished, Lease, Outcome, SqliteTaskQueue
from imgpipe.ports import Clock

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str], bytes], int]
# (status, error detail, Retry-After seconds)
_Answer = tuple[int, str, float | None]
_Transport = Callable[[dict[str, str], bytes, float], _Answer]
MAX_WORKERS = 512  # beyond this, threads cost more than they overlap
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


RELEASE_CHECK_EVERY = 2.0  # real seconds between looks for leases of dead dispatchers


class OwnerLock:
    """A dispatcher's identity in the queue: a file it holds an exclusive `flock` on for as long
    as its process lives. The kernel drops the lock when the process dies (even by SIGKILL), so
    any other process can tell at once that the leases of that owner are orphaned."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.name = uuid.uuid4().hex
        self._path = folder / f"{self.name}.lock"
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def is_alive(self, owner: str) -> bool:
        if owner == self.name:
            return True
        path = self.folder / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False

    def close(self) -> None:
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


class HttpTarget:
    """POSTs to one URL; a connection per thread, kept alive between dispatches."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"target URL must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._local = threading.local()

    def __call__(self, headers: dict[str, str], body: bytes, timeout: float) -> _Answer:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return self._post(conn, headers, body, timeout)
            except _STALE_CONNECTION:
                # The server closed an idle keep-alive connection before reading the request;
                # it never saw it, so sending it again on a fresh connection is safe.
                self._drop()
        return self._post(self._connect(timeout), headers, body, timeout)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout)
        self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _post(
        self, conn: http.client.HTTPConnection, headers: dict[str, str], body: bytes, timeout: float
    ) -> _Answer:
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
        except BaseException:
            self._drop()
            raise
        if response.will_close:
            self._drop()
        detail = "" if 200 <= response.status < 300 else text[:200].decode("utf-8", "replace")
        return response.status, detail, retry_after(response.getheader("Retry-After"))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110);
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _in_process(handler: Handler) -> _Transport:
    def call(headers: dict[str, str], body: bytes, timeout: float) -> _Answer:
        # No timeout can be imposed on a thread; past the deadline the lease expires and the
        # late answer is ignored by the queue.
        try:
            return handler(headers, body), "", None
        except Exception as exc:
            # What a web framework answers when the handler raises.
            log.warning("handler for %s raised", headers["X-CloudTasks-TaskName"], exc_info=True)
            return 500, f"{type(exc).__name__}: {exc}", None

    return call


def task_headers(lease: Lease, secret: str | None = None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Google-Cloud-Tasks",
        "X-CloudTasks-QueueName": lease.queue,
        "X-CloudTasks-TaskName": lease.name,
        "X-CloudTasks-TaskRetryCount": str(lease.retry_count),
        "X-CloudTasks-TaskExecutionCount": str(lease.execution_count),
        "X-CloudTasks-TaskETA": f"{lease.eta:.6f}",
    }
    if lease.previous_response is not None:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(lease.previous_response)
    if lease.retry_reason:
        headers["X-CloudTasks-TaskRetryReason"] = _header_text(lease.retry_reason)
    if secret:
        headers["X-Imgpipe-Task-Secret"] = secret
    return headers


def _header_text(text: str, limit: int = 200) -> str:
    """One line of printable ASCII, as a header value must be."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")[:limit]


class Dispatcher:
    """`targets` maps a task's target ("worker", "failure") to a handler or a URL.

    `start()`/`stop()` run the dispatch loop in a background thread; `run_until_idle()` runs it
    in the caller's thread instead (CLI, tests). `poll_interval` (real seconds) bounds every
    idle wait: it is how work enqueued by other processes is noticed."""

    def __init__(
        self,
        queue: SqliteTaskQueue,
        clock: Clock,
        targets: Mapping[str, Handler | str],
        secret: str | None = None,
        *,
        queues: Sequence[str] | None = None,
        poll_interval: float = 0.2,
        max_workers: int | None = None,
        on_finished: Callable[[Finished], None] | None = None,
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._secret = secret
        self._poll = poll_interval
        self._on_finished = on_finished
        self._targets: dict[str, _Transport] = {
            name: HttpTarget(t) if isinstance(t, str) else _in_process(t)
            for name, t in targets.items()
        }
        infos = queue.list_queues()
        self._queues = list(queues) if queues is not None else [i.config.name for i in infos]
        caps = {i.config.name: i.config.rate.max_concurrent_dispatches for i in infos}
        workers = max_workers or sum(caps.get(q, 1) for q in self._queues)
        self._max_workers = max(1, min(MAX_WORKERS, workers))
        self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="imgpipe-dispatch")
        self._lock = threading.Lock()
        self._in_flight = 0  # leased and not yet recorded
        self._dispatched = 0
        self._answers: list[Outcome] = []  # answered, to be recorded by the loop in one batch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._owner = OwnerLock(queue.path.parent / f"{queue.path.name}.owners")
        self._released_at = 0.0
        queue.add_listener(self._wake)
        if isinstance(clock, WakingClock):
            clock.subscribe(self._wake)
        # Leases of a dispatcher that died (a crash, a kill) hold concurrency slots until their
        # deadline; released now, their tasks run again after their backoff.
        self.release_orphans()

    @property
    def owner(self) -> str:
        return self._owner.name

    def release_orphans(self) -> int:
        self._released_at = time.monotonic()
        dead = [o for o in self._queue.lease_owners() if not self._owner.is_alive(o)]
        released = self._queue.release_owners(dead, error="dispatcher died")
        if released:
            log.warning("released %d tasks leased by a dispatcher that died", len(released))
        self._report(released)
        return len(released)

    @property
    def dispatched(self) -> int:
        """Dispatches finished so far (any outcome)."""
        with self._lock:
            return self._dispatched

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("dispatcher already started")
        self._thread = threading.Thread(target=self._loop, name="imgpipe-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True, grace: float | None = None) -> None:
        """Stop leasing. `wait` lets dispatches in flight finish (for at most `grace` seconds
        when given); those still running then are released as failed attempts, to be retried
        after their backoff, and their late answers are ignored. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if wait and grace is not None:
            end = time.monotonic() + max(0.0, grace)
            while time.monotonic() < end:
                self._record()
                with self._lock:
                    if self._in_flight == 0:
                        break
                time.sleep(0.05)
            wait = False
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._record()
        with self._lock:
            unfinished = self._in_flight
        if unfinished:
            self._report(self._queue.release_owners([self.owner], error="dispatcher stopped"))
        self._queue.remove_listener(self._wake)
        self._owner.close()

    def run_until_idle(
        self, *, wait_for_scheduled: bool = False, timeout: float | None = None
    ) -> int:
        """Dispatch until nothing is due and nothing is in flight; returns the number of
        dispatches made. Tasks scheduled later (incl. retries in backoff) end the run unless
        `wait_for_scheduled`; paused queues never hold it up. Raises TimeoutError after
        `timeout` real seconds."""
        if self._thread is not None:
            raise RuntimeError("run_until_idle() cannot run while the dispatcher is started")
        start = self.dispatched
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._wake.clear()
            if self._cycle() == 0:
                if self._idle(wait_for_scheduled):
                    return self.dispatched - start
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"queue not idle after {timeout} s")
                self._wait()

    # -- internals ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - self._released_at > RELEASE_CHECK_EVERY:
                    self.release_orphans()
                leased = self._cycle()
            except Exception:
                log.exception("leasing failed; retrying")
                leased = 0
            if leased == 0:
                self._wait()

    def _cycle(self) -> int:
        self._record()
        leased = 0
        for name in self._queues:
            with self._lock:
                free = self._max_workers - self._in_flight
            if free <= 0:
                break
            for lease in self._queue.lease(name, free, owner=self.owner):
                with self._lock:
                    self._in_flight += 1
                self._pool.submit(self._dispatch, lease)
                leased += 1
        return leased

    def _idle(self, wait_for_scheduled: bool) -> bool:
        with self._lock:
            if self._in_flight:
                return False
        now = self._clock.now()
        for name in self._queues:
            due = self._queue.next_due(name)
            if due is not None and (wait_for_scheduled or due.task_at <= now):
                return False
        return True

    def _wait(self) -> None:
        with self._lock:
            full = self._in_flight >= self._max_workers
        timeout = self._poll
        if not full:
            now = self._clock.now()
            dues = [d for d in map(self._queue.next_due, self._queues) if d is not None]
            soonest = min((d.dispatch_at for d in dues), default=None)
            if soonest is not None:
                # A floor keeps a queue blocked elsewhere (other processes' leases) from spinning.
                timeout = min(timeout, max(soonest - now, 0.001))
        self._wake.wait(timeout)

    def _dispatch(self, lease: Lease) -> None:
        """Runs on a pool thread: only the network/handler call. Results are recorded by the
        loop thread in batches, so worker threads never contend for the database."""
        status: int | None
        wait: float | None = None
        try:
            transport = self._targets.get(lease.target)
            if transport is None:
                status, error = None, f"no handler for target {lease.target!r}"
            else:
                headers = task_headers(lease, self._secret)
                status, error, wait = transport(headers, lease.body, lease.dispatch_deadline)
        except Exception as exc:  # connection refused, timeout, protocol error: no response
            status, error = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._answers.append(Outcome(lease, status, error, wait))
        self._wake.set()

    def _record(self) -> None:
        with self._lock:
            answers, self._answers = self._answers, []
        if not answers:
            return
        try:
            results = self._queue.complete_many(answers)
        except Exception:
            log.exception("recording %d outcomes failed; will retry", len(answers))
            with self._lock:
                self._answers[:0] = answers
            return
        with self._lock:
            self._in_flight -= len(answers)
            self._dispatched += len(answers)
        self._report(results)

    def _report(self, results: Sequence[object]) -> None:
        if self._on_finished is not None:
            for result in results:
                if isinstance(result, Finished):
                    self._on_finished(result)
