"""A durable task queue in SQLite that behaves like Cloud Tasks (see cloud-tasks.md): named tasks
with deduplication, schedule times, a token bucket per queue, a concurrency cap, retries with
backoff, and leases so that a crashed dispatcher loses nothing. A 429 or 503 answer slows the
whole queue, and its Retry-After holds the queue and the task, as the real service does.

A dispatch is a *lease*: `lease()` marks tasks in flight until `now + dispatch_deadline`;
`complete()` reports the response. A lease that expires counts as a failed attempt (like a
Cloud Tasks deadline) and is retried with backoff. Each lease bumps `lease_id`, and `complete()`
only accepts the current one, so a late answer to an expired lease never counts twice.

Thread-safe (one lock per instance around each transaction) and process-safe (WAL,
BEGIN IMMEDIATE, busy timeout)."""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from imgpipe.local.sqlite import Database
from imgpipe.ports import Clock, QueueStats, TaskRequest
from imgpipe.queueconfig import (
    MAX_DISPATCHES_PER_SECOND,
    QueueConfig,
    RetryConfig,
    backoff_delay,
    should_retry,
    with_changes,
)

log = logging.getLogger(__name__)

RUNNING, PAUSED = "RUNNING", "PAUSED"
MAX_SCHEDULE_AHEAD = 30 * 86400.0
TASK_LIFETIME = 31 * 86400.0  # Cloud Tasks deletes any task this long after creation
# The API reference says 100 KB, the quotas page 1 MB: the stricter one keeps tasks portable.
MAX_BODY_BYTES = 100 * 1024
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_HOUSEKEEPING_EVERY = 512  # write operations between sweeps of expired tombstones and tasks
# Epoch seconds carry ~2e-7 s of float noise, times up to 500/s: a refill that should give a
# whole token may come out a little short of it.
_EPSILON = 1e-3
# A 429 or 503 halves the queue's dispatch rate (down to 1/128 of it) and every success
# raises it by a quarter again: the target gets room to recover, as Cloud Tasks gives it.
OVERLOAD_STATUSES = frozenset({429, 503})
_MIN_SLOWDOWN = 1 / 128
_RECOVERY = 1.25
MAX_RETRY_AFTER = 3600.0  # a Retry-After beyond an hour is read as an hour

_MIGRATIONS = (
    """
    CREATE TABLE queues (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'RUNNING',
        tokens REAL NOT NULL,
        tokens_at REAL NOT NULL
    );
    CREATE TABLE tasks (
        queue TEXT NOT NULL REFERENCES queues (name),
        name TEXT NOT NULL,
        target TEXT NOT NULL,
        body BLOB NOT NULL,
        created REAL NOT NULL,
        schedule_time REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        response_count INTEGER NOT NULL DEFAULT 0,
        first_attempt_time REAL,
        last_attempt_time REAL,
        lease_expires REAL,
        lease_id INTEGER NOT NULL DEFAULT 0,
        forced INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT,
        PRIMARY KEY (queue, name)
    );
    CREATE INDEX tasks_due ON tasks (queue, lease_expires, schedule_time);
    CREATE INDEX tasks_created ON tasks (queue, created);
    CREATE INDEX tasks_forced ON tasks (queue) WHERE forced = 1;
    CREATE TABLE tombstones (
        queue TEXT NOT NULL,
        name TEXT NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (queue, name)
    );
    CREATE INDEX tombstones_expires ON tombstones (expires)
    """,
    # 429/503 answers: the queue's rate factor and the time a Retry-After holds it until.
    """
    ALTER TABLE queues ADD COLUMN slowdown REAL NOT NULL DEFAULT 1.0;
    ALTER TABLE queues ADD COLUMN throttled_until REAL NOT NULL DEFAULT 0
    """,
    # Which dispatcher holds each lease: a restart releases those of a dead one at once; and
    # the due retries, which are leased before fresh tasks.
    """
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
    CREATE INDEX tasks_retries ON tasks (queue, schedule_time)
        WHERE attempts > 0 AND lease_expires IS NULL
    """,
)

_INFO_COLUMNS = "config, state, slowdown, throttled_until"
_LEASE_COLUMNS = (
    "name, target, body, attempts, response_count, schedule_time, first_attempt_time, "
    "last_attempt_time, lease_id, lease_expires, last_status, last_error"
)


class UnknownQueue(LookupError):
    """The queue does not exist (Cloud Tasks: NOT_FOUND)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One dispatch in flight, with what the Cloud Tasks headers carry."""

    queue: str
    name: str
    target: str
    body: bytes
    retry_count: int  # attempts before this dispatch
    execution_count: int  # attempts that got a response
    eta: float  # schedule time, epoch seconds
    first_attempt_time: float
    lease_id: int
    lease_expires: float
    dispatch_deadline: float
    previous_response: int | None = None  # status of the previous attempt, if it got one
    retry_reason: str | None = None  # why the previous attempt failed


class Outcome(NamedTuple):
    """The answer to one dispatch: `status_code` None = no response at all; `retry_after`
    (seconds) from the target's Retry-After header, which counts with a 429 or 503."""

    lease: Lease
    status_code: int | None
    error: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """A task that left the queue: succeeded, or `gave_up` after its last failed attempt."""

    queue: str
    name: str
    target: str
    body: bytes
    attempts: int
    status_code: int | None
    error: str
    first_attempt_time: float | None
    last_attempt_time: float | None
    gave_up: bool


@dataclass(frozen=True, slots=True)
class Rescheduled:
    queue: str
    name: str
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class QueueInfo:
    config: QueueConfig
    state: str
    slowdown: float = 1.0  # fraction of the configured rate left after 429/503 answers
    held_until: float | None = None  # a Retry-After stops dispatching until then


@dataclass(frozen=True, slots=True)
class TaskInfo:
    queue: str
    name: str
    target: str
    body: bytes
    created: float
    schedule_time: float
    attempts: int
    response_count: int
    first_attempt_time: float | None
    last_attempt_time: float | None
    lease_expires: float | None
    last_status: int | None
    last_error: str | None
    forced: bool


@dataclass(frozen=True, slots=True)
class Due:
    """When a queue next has work: `task_at` = a task is due (ignoring the token bucket);
    `dispatch_at` = a `lease()` may return something (also waits for the next token)."""

    task_at: float
    dispatch_at: float


def _retry_reason(row: sqlite3.Row) -> str:
    """Why the previous attempt failed, for the X-CloudTasks-TaskRetryReason header."""
    if row["last_status"] is not None:
        return f"HTTP {row['last_status']}"
    return str(row["last_error"] or "no response")


def _effective_rate(cfg: QueueConfig, slowdown: float) -> tuple[float, float]:
    """Dispatch rate and burst after 429/503 answers slowed the queue by `slowdown` (<= 1).
    An unlimited local queue slows down from the Cloud Tasks maximum."""
    rate = cfg.rate.max_dispatches_per_second
    burst = float(cfg.rate.max_burst_size)
    if slowdown >= 1.0:
        return rate, burst
    return min(rate, MAX_DISPATCHES_PER_SECOND) * slowdown, max(1.0, math.floor(burst * slowdown))


@lru_cache(maxsize=64)
def _parse_config(text: str) -> QueueConfig:
    return QueueConfig.from_dict(json.loads(text))


def _dump_config(cfg: QueueConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def _validate(task: TaskRequest) -> None:
    if not _TASK_ID.fullmatch(task.name):
        raise ValueError(f"task name must match [A-Za-z0-9_-]{{1,500}}, got {task.name[:80]!r}")
    if not task.target:
        raise ValueError("task target must not be empty")
    if len(task.body) > MAX_BODY_BYTES:
        raise ValueError(f"task body is {len(task.body)} bytes, the limit is {MAX_BODY_BYTES}")


class SqliteTaskQueue:
    """`configs` create the queues that do not exist yet; existing queues keep their stored
    config (changed with `update_queue`, like `gcloud tasks queues update`)."""

    def __init__(self, path: Path | str, clock: Clock, configs: Iterable[QueueConfig]) -> None:
        self._clock = clock
        self.path = Path(path)
        self._db = Database(self.path, _MIGRATIONS)
        self._lock = threading.Lock()
        self._listeners: list[threading.Event] = []
        self._writes = 0
        now = clock.now()
        with self._tx() as conn:
            for cfg in configs:
                conn.execute(
                    "INSERT OR IGNORE INTO queues (name, config, tokens, tokens_at) "
                    "VALUES (?, ?, ?, ?)",
                    (cfg.name, _dump_config(cfg), cfg.rate.max_burst_size, now),
                )
            self._housekeep(conn, now)

    def close(self) -> None:
        self._db.close()

    def add_listener(self, event: threading.Event) -> None:
        """`event` is set whenever work may have become ready (create, run, resume, complete)."""
        with self._lock:
            self._listeners.append(event)

    def remove_listener(self, event: threading.Event) -> None:
        with self._lock:
            if event in self._listeners:
                self._listeners.remove(event)

    # -- ports.TaskQueue ---------------------------------------------------------------------

    def create(self, task: TaskRequest) -> bool:
        """False = ALREADY_EXISTS: the name is live or was finished less than `tombstone_ttl`
        ago."""
        _validate(task)
        now = self._clock.now()
        eta = now if task.schedule_time is None else max(now, task.schedule_time)
        if eta > now + MAX_SCHEDULE_AHEAD:
            raise ValueError("schedule_time must be at most 30 days ahead")
        with self._tx() as conn:
            self._queue_row(conn, task.queue)
            tomb = conn.execute(
                "SELECT expires FROM tombstones WHERE queue = ? AND name = ?",
                (task.queue, task.name),
            ).fetchone()
            if tomb is not None:
                if tomb[0] > now:
                    return False
                conn.execute(
                    "DELETE FROM tombstones WHERE queue = ? AND name = ?", (task.queue, task.name)
                )
            created = conn.execute(
                "INSERT OR IGNORE INTO tasks (queue, name, target, body, created, schedule_time) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (task.queue, task.name, task.target, task.body, now, eta),
            ).rowcount
        if created:
            self._notify()
        return created == 1

    def exists(self, queue: str, name: str) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM tasks WHERE queue = ? AND name = ?", (queue, name)
        ).fetchone()
        return row is not None

    def retry_config(self, queue: str) -> RetryConfig:
        return _parse_config(self._queue_row(self._db.conn, queue)["config"]).retry

    def stats(self) -> list[QueueStats]:
        rows = self._db.conn.execute(
            "SELECT q.name, q.state, count(t.name), coalesce(sum(t.lease_expires > ?), 0) "
            "FROM queues q LEFT JOIN tasks t ON t.queue = q.name GROUP BY q.name ORDER BY q.name",
            (self._clock.now(),),
        ).fetchall()
        return [QueueStats(r[0], r[1], r[2], r[3]) for r in rows]

    # -- queues ------------------------------------------------------------------------------

    def list_queues(self) -> list[QueueInfo]:
        rows = self._db.conn.execute(
            f"SELECT {_INFO_COLUMNS} FROM queues ORDER BY name"  # noqa: S608
        ).fetchall()
        return [self._info(r) for r in rows]

    def get_queue(self, name: str) -> QueueInfo:
        return self._info(self._queue_row(self._db.conn, name))

    def _info(self, row: sqlite3.Row) -> QueueInfo:
        held = row["throttled_until"]
        return QueueInfo(
            _parse_config(row["config"]),
            row["state"],
            row["slowdown"],
            held if held > self._clock.now() else None,
        )

    def update_queue(self, name: str, **changes: Any) -> QueueConfig:
        """Flat settings as in `QueueConfig.to_dict`, e.g. `max_attempts=3`."""
        with self._tx() as conn:
            row = self._queue_row(conn, name)
            cfg = with_changes(_parse_config(row["config"]), **changes)
            conn.execute(
                "UPDATE queues SET config = ?, tokens = min(tokens, ?) WHERE name = ?",
                (_dump_config(cfg), cfg.rate.max_burst_size, name),
            )
        self._notify()
        return cfg

    def pause(self, name: str) -> None:
        self._set_state(name, PAUSED)

    def resume(self, name: str) -> None:
        self._set_state(name, RUNNING)
        self._notify()

    def purge(self, name: str) -> int:
        """Deletes every task created before the call (in flight too: their results are then
        ignored); their names stay reserved like any deleted task's."""
        now = self._clock.now()
        with self._tx() as conn:
            cfg = _parse_config(self._queue_row(conn, name)["config"])
            where = "FROM tasks WHERE queue = ? AND created <= ?"
            conn.execute(
                f"INSERT OR REPLACE INTO tombstones (queue, name, expires) "
                f"SELECT queue, name, ? {where}",
                (now + cfg.tombstone_ttl, name, now),
            )
            return int(conn.execute(f"DELETE {where}", (name, now)).rowcount)

    # -- tasks -------------------------------------------------------------------------------

    def get_task(self, queue: str, name: str) -> TaskInfo | None:
        row = self._db.conn.execute(
            "SELECT queue, name, target, body, created, schedule_time, attempts, response_count, "
            "first_attempt_time, last_attempt_time, lease_expires, last_status, last_error, "
            "forced FROM tasks WHERE queue = ? AND name = ?",
            (queue, name),
        ).fetchone()
        if row is None:
            return None
        values = list(row)
        values[3] = bytes(values[3])
        values[-1] = bool(values[-1])
        return TaskInfo(*values)

    def run_task(self, queue: str, name: str) -> bool:
        """Force a dispatch now, ignoring pause and rate limits. False when the task does not
        exist or is in flight."""
        now = self._clock.now()
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE tasks SET forced = 1, schedule_time = min(schedule_time, ?) "
                "WHERE queue = ? AND name = ? AND lease_expires IS NULL",
                (now, queue, name),
            ).rowcount
        if changed:
            self._notify()
        return changed == 1

    def delete_task(self, queue: str, name: str) -> bool:
        now = self._clock.now()
        with self._tx() as conn:
            cfg = _parse_config(self._queue_row(conn, queue)["config"])
            return self._delete(conn, cfg, name, now)

    # -- dispatch ----------------------------------------------------------------------------

    def lease(self, queue: str, max_n: int, owner: str | None = None) -> list[Lease]:
        """Up to `max_n` tasks to dispatch now, within pause, token bucket and concurrency cap;
        forced tasks (`run_task`) first and outside those limits. `owner` names the
        dispatcher that holds the leases (see `release_owners`)."""
        if max_n <= 0:
            return []
        now = self._clock.now()
        with self._tx() as conn:
            row = self._queue_row(conn, queue)
            cfg = _parse_config(row["config"])
            self._reap(conn, cfg, now)
            leased = self._take(conn, cfg, now, max_n, forced=True, owner=owner)
            free = max_n - len(leased)
            if row["state"] != RUNNING or free <= 0 or now < row["throttled_until"]:
                return leased
            in_flight = conn.execute(
                "SELECT count(*) FROM tasks WHERE queue = ? AND lease_expires > ?", (queue, now)
            ).fetchone()[0]
            free = min(free, cfg.rate.max_concurrent_dispatches - in_flight)
            rate, burst = _effective_rate(cfg, row["slowdown"])
            tokens = burst
            if math.isfinite(rate):
                elapsed = max(0.0, now - row["tokens_at"])
                tokens = min(tokens, row["tokens"] + elapsed * rate)
                free = min(free, math.floor(tokens + _EPSILON))
            if free > 0:
                taken = self._take(conn, cfg, now, free, forced=False, owner=owner)
                leased += taken
                tokens = max(0.0, tokens - len(taken))
            conn.execute(
                "UPDATE queues SET tokens = ?, tokens_at = ? WHERE name = ?", (tokens, now, queue)
            )
            return leased

    def complete(
        self,
        lease: Lease,
        status_code: int | None,
        error: str = "",
        retry_after: float | None = None,
    ) -> Finished | Rescheduled | None:
        """Record the outcome of a dispatch: `status_code` None = no response (connection
        error, timeout); `retry_after` the seconds a 429/503 asked for. Returns None when the
        lease is no longer current (it expired and was retried, or the task was deleted or
        purged): that answer is ignored."""
        return self.complete_many([Outcome(lease, status_code, error, retry_after)])[0]

    def complete_many(self, outcomes: Sequence[Outcome]) -> list[Finished | Rescheduled | None]:
        """`complete` for a batch, in one transaction (one commit instead of one per task)."""
        if not outcomes:
            return []
        now = self._clock.now()
        results: list[Finished | Rescheduled | None] = []
        with self._tx() as conn:
            configs: dict[str, QueueConfig] = {}
            for lease, status_code, error, retry_after in outcomes:
                row = conn.execute(
                    f"SELECT {_LEASE_COLUMNS} FROM tasks "  # noqa: S608
                    "WHERE queue = ? AND name = ? AND lease_id = ? AND lease_expires IS NOT NULL",
                    (lease.queue, lease.name, lease.lease_id),
                ).fetchone()
                if row is None:
                    results.append(None)
                    continue
                cfg = configs.get(lease.queue)
                if cfg is None:
                    cfg = _parse_config(self._queue_row(conn, lease.queue)["config"])
                    configs[lease.queue] = cfg
                if status_code is not None and 200 <= status_code < 300:
                    self._delete(conn, cfg, lease.name, now)
                    results.append(self._finished(cfg, row, status_code, "", False))
                    conn.execute(
                        "UPDATE queues SET slowdown = min(1.0, slowdown * ?) "
                        "WHERE name = ? AND slowdown < 1.0",
                        (_RECOVERY, cfg.name),
                    )
                    continue
                hold = None
                if status_code in OVERLOAD_STATUSES:
                    if retry_after is not None:
                        hold = min(max(retry_after, 0.0), MAX_RETRY_AFTER)
                    conn.execute(
                        "UPDATE queues SET slowdown = max(?, slowdown / 2), "
                        "throttled_until = max(throttled_until, ?) WHERE name = ?",
                        (_MIN_SLOWDOWN, now + (hold or 0.0), cfg.name),
                    )
                responses = row["response_count"] + (status_code is not None)
                results.append(
                    self._fail(
                        conn,
                        cfg,
                        row,
                        at=now,
                        status=status_code,
                        error=error,
                        responses=responses,
                        not_before=None if hold is None else now + hold,
                    )
                )
        self._notify()
        return results

    def lease_owners(self) -> set[str]:
        rows = self._db.conn.execute(
            "SELECT DISTINCT lease_owner FROM tasks "
            "WHERE lease_owner IS NOT NULL AND lease_expires IS NOT NULL"
        ).fetchall()
        return {row[0] for row in rows}

    def release_owners(
        self, owners: Iterable[str], error: str = "dispatcher stopped"
    ) -> list[Finished | Rescheduled]:
        """Every lease these dispatchers hold ends now as a failed attempt with no response
        (as a dropped connection does): retried after its backoff, or given up after the last
        attempt. Their late answers, if any, are ignored like those of any expired lease."""
        owners = list(owners)
        if not owners:
            return []
        now = self._clock.now()
        results: list[Finished | Rescheduled] = []
        with self._tx() as conn:
            marks = ", ".join("?" for _ in owners)
            rows = conn.execute(
                f"SELECT queue, {_LEASE_COLUMNS} FROM tasks "  # noqa: S608
                f"WHERE lease_owner IN ({marks}) AND lease_expires IS NOT NULL",
                owners,
            ).fetchall()
            configs: dict[str, QueueConfig] = {}
            for row in rows:
                cfg = configs.get(row["queue"])
                if cfg is None:
                    cfg = configs[row["queue"]] = _parse_config(
                        self._queue_row(conn, row["queue"])["config"]
                    )
                results.append(
                    self._fail(
                        conn,
                        cfg,
                        row,
                        at=now,
                        status=None,
                        error=error,
                        responses=row["response_count"],
                    )
                )
        if results:
            self._notify()
        return results

    def next_due(self, queue: str) -> Due | None:
        """None when the queue holds nothing it could dispatch (empty, or paused with no forced
        task; expired leases still count, they must be reaped)."""
        now = self._clock.now()
        conn = self._db.conn
        row = self._queue_row(conn, queue)
        forced, waiting, expiry, in_flight = conn.execute(
            "SELECT (SELECT min(schedule_time) FROM tasks "
            "        WHERE queue = ?1 AND forced = 1 AND lease_expires IS NULL), "
            "       (SELECT min(schedule_time) FROM tasks "
            "        WHERE queue = ?1 AND lease_expires IS NULL), "
            "       (SELECT min(lease_expires) FROM tasks WHERE queue = ?1), "
            "       (SELECT count(*) FROM tasks WHERE queue = ?1 AND lease_expires > ?2)",
            (queue, now),
        ).fetchone()
        if row["state"] != RUNNING:
            waiting = forced
        elif waiting is not None and waiting < row["throttled_until"]:
            waiting = row["throttled_until"]  # held by a Retry-After; forced tasks are not
        candidates = [t for t in (forced, waiting, expiry) if t is not None]
        if not candidates:
            return None
        dispatchable = [t for t in (forced, expiry) if t is not None]
        if waiting is not None and waiting != forced:
            cfg = _parse_config(row["config"])
            rate, _ = _effective_rate(cfg, row["slowdown"])
            ready_at = waiting
            if math.isfinite(rate) and row["tokens"] + _EPSILON < 1:
                ready_at = max(ready_at, row["tokens_at"] + (1 - _EPSILON - row["tokens"]) / rate)
            if in_flight >= cfg.rate.max_concurrent_dispatches and expiry is not None:
                ready_at = max(ready_at, expiry)  # or sooner, when a dispatch completes
            dispatchable.append(ready_at)
        return Due(min(candidates), min(dispatchable))

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db.transaction() as conn:
            self._writes += 1
            if self._writes % _HOUSEKEEPING_EVERY == 0:
                self._housekeep(conn, self._clock.now())
            yield conn

    def _notify(self) -> None:
        for event in tuple(self._listeners):
            event.set()

    def _queue_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT config, state, tokens, tokens_at, slowdown, throttled_until FROM queues "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise UnknownQueue(name)
        return row

    def _set_state(self, name: str, state: str) -> None:
        with self._tx() as conn:
            self._queue_row(conn, name)
            conn.execute("UPDATE queues SET state = ? WHERE name = ?", (state, name))

    @staticmethod
    def _take(
        conn: sqlite3.Connection,
        cfg: QueueConfig,
        now: float,
        n: int,
        *,
        forced: bool,
        owner: str | None,
    ) -> list[Lease]:
        if n <= 0:
            return []
        params = {
            "now": now,
            "expires": now + cfg.dispatch_deadline,
            "queue": cfg.name,
            "owner": owner,
        }
        # Due retries go before fresh tasks (Cloud Tasks promises no order): an attempt that a
        # crash or a failure interrupted runs again after its backoff, not behind a backlog.
        passes = (
            ["forced = 1"]
            if forced
            else [
                "attempts > 0 AND schedule_time <= :now",
                "attempts = 0 AND schedule_time <= :now",
            ]
        )
        rows: list[sqlite3.Row] = []
        for cond in passes:
            if len(rows) >= n:
                break
            rows += conn.execute(
                "UPDATE tasks SET attempts = attempts + 1, lease_id = lease_id + 1, forced = 0, "  # noqa: S608
                "first_attempt_time = coalesce(first_attempt_time, :now), "
                "last_attempt_time = :now, lease_expires = :expires, lease_owner = :owner "
                "WHERE rowid IN (SELECT rowid FROM tasks WHERE queue = :queue AND "
                f"lease_expires IS NULL AND {cond} ORDER BY schedule_time LIMIT :n) "
                f"RETURNING {_LEASE_COLUMNS}",
                {**params, "n": n - len(rows)},
            ).fetchall()
        return [
            Lease(
                queue=cfg.name,
                name=r["name"],
                target=r["target"],
                body=bytes(r["body"]),
                retry_count=r["attempts"] - 1,
                execution_count=r["response_count"],
                # RETURNING hands back integral REALs as ints
                eta=float(r["schedule_time"]),
                first_attempt_time=float(r["first_attempt_time"]),
                lease_id=r["lease_id"],
                lease_expires=float(r["lease_expires"]),
                dispatch_deadline=cfg.dispatch_deadline,
                previous_response=r["last_status"] if r["attempts"] > 1 else None,
                retry_reason=_retry_reason(r) if r["attempts"] > 1 else None,
            )
            for r in sorted(rows, key=lambda r: (r["attempts"] == 1, float(r["schedule_time"])))
        ]

    def _reap(self, conn: sqlite3.Connection, cfg: QueueConfig, now: float) -> None:
        """Leases past their deadline are failed attempts (the dispatcher died or hung)."""
        rows = conn.execute(
            f"SELECT {_LEASE_COLUMNS} FROM tasks WHERE queue = ? AND lease_expires <= ?",  # noqa: S608
            (cfg.name, now),
        ).fetchall()
        for row in rows:
            error = "dispatch deadline exceeded"
            outcome = self._fail(
                conn,
                cfg,
                row,
                at=row["lease_expires"],
                status=None,
                error=error,
                responses=row["response_count"],
            )
            if isinstance(outcome, Finished):
                log.warning(
                    "task %s/%s gave up after %d attempts", cfg.name, row["name"], row["attempts"]
                )

    def _fail(
        self,
        conn: sqlite3.Connection,
        cfg: QueueConfig,
        row: sqlite3.Row,
        *,
        at: float,
        status: int | None,
        error: str,
        responses: int,
        not_before: float | None = None,
    ) -> Finished | Rescheduled:
        attempts = row["attempts"]
        error = error or f"HTTP {status}"
        if should_retry(attempts, row["first_attempt_time"], at, cfg.retry):
            next_at = max(at + backoff_delay(attempts - 1, cfg.retry), not_before or 0.0)
            conn.execute(
                "UPDATE tasks SET lease_expires = NULL, lease_owner = NULL, schedule_time = ?, "
                "response_count = ?, last_status = ?, last_error = ? WHERE queue = ? AND name = ?",
                (next_at, responses, status, error[:2000], cfg.name, row["name"]),
            )
            return Rescheduled(cfg.name, row["name"], attempts, next_at)
        self._delete(conn, cfg, row["name"], at)
        return self._finished(cfg, row, status, error, True)

    @staticmethod
    def _finished(
        cfg: QueueConfig, row: sqlite3.Row, status: int | None, error: str, gave_up: bool
    ) -> Finished:
        return Finished(
            queue=cfg.name,
            name=row["name"],
            target=row["target"],
            body=bytes(row["body"]),
            attempts=row["attempts"],
            status_code=status,
            error=error,
            first_attempt_time=row["first_attempt_time"],
            last_attempt_time=row["last_attempt_time"],
            gave_up=gave_up,
        )

    @staticmethod
    def _delete(conn: sqlite3.Connection, cfg: QueueConfig, name: str, now: float) -> bool:
        deleted = conn.execute(
            "DELETE FROM tasks WHERE queue = ? AND name = ?", (cfg.name, name)
        ).rowcount
        if deleted:
            conn.execute(
                "INSERT OR REPLACE INTO tombstones (queue, name, expires) VALUES (?, ?, ?)",
                (cfg.name, name, now + cfg.tombstone_ttl),
            )
        return deleted == 1

    @staticmethod
    def _housekeep(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM tombstones WHERE expires <= ?", (now,))
        conn.execute("DELETE FROM tasks WHERE created <= ?", (now - TASK_LIFETIME,))
