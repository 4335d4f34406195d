"""The SQLite task queue against cloud-tasks.md, on real database files and a fake clock."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from imgpipe.clock import FakeClock
from imgpipe.local import taskqueue
from imgpipe.local.taskqueue import (
    Finished,
    Lease,
    Rescheduled,
    SqliteTaskQueue,
    UnknownQueue,
)
from imgpipe.ports import QueueStats, TaskRequest
from imgpipe.queueconfig import QueueConfig, RateLimits, RetryConfig

T0 = 1_700_000_000.0
SHARED = Path(__file__).resolve().parents[2] / "shared"

MakeQueue = Callable[..., SqliteTaskQueue]


def _config(
    name: str = "q",
    *,
    rate: float = math.inf,
    burst: int = 100,
    concurrency: int = 1000,
    retry: RetryConfig | None = None,
    deadline: float = 600.0,
    tombstone_ttl: float = 3600.0,
) -> QueueConfig:
    retry = retry or RetryConfig(max_attempts=5, min_backoff=10, max_backoff=300, max_doublings=4)
    return QueueConfig(name, RateLimits(rate, burst, concurrency), retry, deadline, tombstone_ttl)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def make_queue(tmp_path: Path, clock: FakeClock) -> MakeQueue:
    def make(*configs: QueueConfig, path: Path | None = None) -> SqliteTaskQueue:
        return SqliteTaskQueue(path or tmp_path / "queue.sqlite", clock, configs or [_config()])

    return make


def _task(name: str, queue: str = "q", schedule_time: float | None = None) -> TaskRequest:
    return TaskRequest(queue, name, "worker", b'{"image_id": "x"}', schedule_time)


def _fill(queue: SqliteTaskQueue, n: int, name: str = "q") -> None:
    for i in range(n):
        assert queue.create(_task(f"t{i}", name))


# -- create, names, tombstones ------------------------------------------------------------------


def test_create_rejects_a_live_duplicate(make_queue: MakeQueue) -> None:
    queue = make_queue()
    assert queue.create(_task("a1")) is True
    assert queue.create(_task("a1")) is False
    assert queue.stats() == [QueueStats("q", "RUNNING", 1, 0)]


def test_name_stays_reserved_for_the_tombstone_ttl(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(_config(tombstone_ttl=3600))
    queue.create(_task("done"))
    [lease] = queue.lease("q", 10)
    finished = queue.complete(lease, 200)
    assert isinstance(finished, Finished) and not finished.gave_up
    clock.advance(3599)
    assert queue.create(_task("done")) is False
    clock.advance(1)
    assert queue.create(_task("done")) is True


def test_deleted_task_name_is_reserved_too(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue()
    queue.create(_task("gone"))
    assert queue.delete_task("q", "gone") is True
    assert queue.delete_task("q", "gone") is False
    assert queue.create(_task("gone")) is False
    clock.advance(3600)
    assert queue.create(_task("gone")) is True


def test_names_are_per_queue(make_queue: MakeQueue) -> None:
    queue = make_queue(_config("a"), _config("b"))
    assert queue.create(_task("same", "a"))
    assert queue.create(_task("same", "b"))


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "dot.name", "x" * 501])
def test_invalid_task_names_are_refused(make_queue: MakeQueue, name: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        make_queue().create(_task(name))


def test_longest_valid_name_is_accepted(make_queue: MakeQueue) -> None:
    assert make_queue().create(_task("A-z_9" * 100))


def test_oversized_body_and_unknown_queue_are_refused(make_queue: MakeQueue) -> None:
    queue = make_queue()
    with pytest.raises(ValueError, match="body"):
        queue.create(TaskRequest("q", "big", "worker", b"x" * (100 * 1024 + 1)))
    with pytest.raises(UnknownQueue):
        queue.create(_task("t", "nope"))
    with pytest.raises(UnknownQueue):
        queue.lease("nope", 1)


# -- scheduling ---------------------------------------------------------------------------------


def test_schedule_time_is_respected(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue()
    queue.create(_task("later", schedule_time=T0 + 60))
    queue.create(_task("past", schedule_time=T0 - 3600))
    assert [lease.name for lease in queue.lease("q", 10)] == ["past"]
    clock.advance(59)
    assert queue.lease("q", 10) == []
    clock.advance(1)
    [lease] = queue.lease("q", 10)
    assert (lease.name, lease.eta) == ("later", T0 + 60)


def test_past_schedule_time_means_now(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.create(_task("past", schedule_time=T0 - 3600))
    info = queue.get_task("q", "past")
    assert info is not None and info.schedule_time == T0


def test_schedule_time_at_most_30_days_ahead(make_queue: MakeQueue) -> None:
    queue = make_queue()
    assert queue.create(_task("edge", schedule_time=T0 + 30 * 86400))
    with pytest.raises(ValueError, match="30 days"):
        queue.create(_task("far", schedule_time=T0 + 30 * 86400 + 1))


def test_next_due_reports_scheduled_work(make_queue: MakeQueue) -> None:
    queue = make_queue()
    assert queue.next_due("q") is None
    queue.create(_task("later", schedule_time=T0 + 60))
    due = queue.next_due("q")
    assert due is not None and due.task_at == due.dispatch_at == T0 + 60


# -- rate and concurrency -----------------------------------------------------------------------


def test_token_bucket_gives_burst_at_start_then_rate_per_second(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(rate=5, burst=20))
    _fill(queue, 100)
    assert len(queue.lease("q", 1000)) == 20
    assert queue.lease("q", 1000) == []
    due = queue.next_due("q")
    assert due is not None and due.task_at == T0 and due.dispatch_at == pytest.approx(T0 + 0.2)
    clock.advance(1)
    assert len(queue.lease("q", 1000)) == 5
    clock.advance(0.2)
    assert len(queue.lease("q", 1000)) == 1
    clock.advance(0.1)
    assert queue.lease("q", 1000) == []
    clock.advance(0.1)
    assert len(queue.lease("q", 1000)) == 1
    # An idle bucket refills to the burst size, not beyond.
    clock.advance(3600)
    assert len(queue.lease("q", 1000)) == 20


def test_retries_take_tokens_too(make_queue: MakeQueue, clock: FakeClock) -> None:
    retry = RetryConfig(max_attempts=5, min_backoff=1, max_backoff=1)
    queue = make_queue(_config(rate=1, burst=1, retry=retry))
    queue.create(_task("a"))
    queue.create(_task("b", schedule_time=T0 + 1))
    [first] = queue.lease("q", 10)
    queue.complete(first, 500)
    clock.advance(1)
    # Both the retry of "a" and the first attempt of "b" are due; one token.
    assert len(queue.lease("q", 10)) == 1
    clock.advance(1)
    assert len(queue.lease("q", 10)) == 1


def test_overload_answers_slow_the_queue_and_successes_restore_it(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(rate=10, burst=10))
    _fill(queue, 100)
    [first] = queue.lease("q", 1)  # 9 tokens left
    queue.complete(first, 429)
    # Halved: rate 5/s and a bucket of 5, so 5 of the 9 tokens remain usable.
    assert len(queue.lease("q", 100)) == 5
    clock.advance(1)
    assert len(queue.lease("q", 100)) == 5  # 10 at full rate
    clock.advance(1)
    leases = queue.lease("q", 100)
    assert len(leases) == 5
    for lease in leases[:3]:  # 0.5 * 1.25^3 = 0.977: rate 9.77/s, bucket 9
        queue.complete(lease, 200)
    clock.advance(1)
    assert len(queue.lease("q", 100)) == 9
    queue.complete(leases[3], 204)  # back to full speed, capped at 1
    clock.advance(1)
    assert len(queue.lease("q", 100)) == 10


def test_each_overload_answer_halves_the_rate_down_to_a_floor(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(rate=128, burst=128))
    _fill(queue, 400)
    leases = queue.lease("q", 100)
    for lease in leases[:10]:  # 1/1024 of the rate, held at 1/128: 1/s, a bucket of 1
        queue.complete(lease, 503)
    clock.advance(10)
    assert len(queue.lease("q", 100)) == 1
    clock.advance(1)
    assert len(queue.lease("q", 100)) == 1
    due = queue.next_due("q")
    assert due is not None and due.dispatch_at == pytest.approx(T0 + 12, abs=2e-3)


def test_retry_after_holds_the_task_and_the_queue_but_not_forced_runs(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    queue.create(_task("busy"))
    [lease] = queue.lease("q", 1)
    outcome = queue.complete(lease, 503, "overloaded", retry_after=120)
    # The backoff alone would be 10 s; Retry-After wins.
    assert isinstance(outcome, Rescheduled) and outcome.next_attempt_at == T0 + 120
    queue.create(_task("other"))
    queue.create(_task("urgent"))
    assert queue.lease("q", 10) == []
    due = queue.next_due("q")
    assert due is not None and due.task_at == due.dispatch_at == T0 + 120
    assert queue.run_task("q", "urgent") is True
    assert [x.name for x in queue.lease("q", 10)] == ["urgent"]
    info = queue.get_queue("q")
    assert (info.slowdown, info.held_until) == (0.5, T0 + 120)
    clock.advance(119)
    assert queue.lease("q", 10) == []
    clock.advance(1)
    assert sorted(x.name for x in queue.lease("q", 10)) == ["busy", "other"]
    assert queue.get_queue("q").held_until is None


def test_retry_after_counts_only_with_429_or_503_and_at_most_an_hour(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    queue.create(_task("a"))
    queue.create(_task("b"))
    [a, b] = queue.lease("q", 2)
    first = queue.complete(a, 500, "oops", retry_after=600)
    assert isinstance(first, Rescheduled) and first.next_attempt_at == T0 + 10
    second = queue.complete(b, 429, "slow down", retry_after=10 * 86400)
    assert isinstance(second, Rescheduled) and second.next_attempt_at == T0 + 3600


def test_a_retry_carries_the_previous_response_and_why_it_failed(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    queue.create(_task("a"))
    queue.create(_task("b"))
    [a, b] = sorted(queue.lease("q", 2), key=lambda x: x.name)
    assert (a.previous_response, a.retry_reason) == (None, None)
    queue.complete(a, 500, "boom")
    queue.complete(b, None, "ConnectionRefusedError: [Errno 111]")
    clock.advance(10)
    again = {x.name: x for x in queue.lease("q", 2)}
    assert (again["a"].previous_response, again["a"].retry_reason) == (500, "HTTP 500")
    assert again["b"].previous_response is None
    assert again["b"].retry_reason == "ConnectionRefusedError: [Errno 111]"


def test_concurrency_cap_counts_leases_in_flight(make_queue: MakeQueue) -> None:
    queue = make_queue(_config(concurrency=3))
    _fill(queue, 10)
    leases = queue.lease("q", 10)
    assert len(leases) == 3
    assert queue.lease("q", 10) == []
    assert queue.stats()[0] == QueueStats("q", "RUNNING", 10, 3)
    queue.complete(leases[0], 204)
    assert len(queue.lease("q", 10)) == 1
    assert queue.stats()[0] == QueueStats("q", "RUNNING", 9, 3)


def test_max_n_bounds_a_lease(make_queue: MakeQueue) -> None:
    queue = make_queue()
    _fill(queue, 5)
    assert len(queue.lease("q", 2)) == 2
    assert queue.lease("q", 0) == []


# -- outcomes and retries -----------------------------------------------------------------------


def test_failures_are_retried_with_backoff_then_given_up(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(retry=RetryConfig(4, 0, 10, 300, 3)))
    queue.create(_task("flaky"))
    seen: list[tuple[int, int]] = []
    delays: list[float] = []
    outcome: Finished | Rescheduled | None = None
    for _ in range(4):
        [lease] = queue.lease("q", 1)
        seen.append((lease.retry_count, lease.execution_count))
        assert lease.first_attempt_time == T0
        outcome = queue.complete(lease, 503, "busy")
        if isinstance(outcome, Rescheduled):
            delays.append(outcome.next_attempt_at - clock.now())
            info = queue.get_task("q", "flaky")
            assert info is not None and info.last_status == 503 and info.last_error == "busy"
            assert queue.lease("q", 1) == []  # not before the backoff
            clock.advance(outcome.next_attempt_at - clock.now())
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert delays == [10, 20, 40]
    assert isinstance(outcome, Finished)
    assert outcome.gave_up and outcome.attempts == 4 and outcome.status_code == 503
    assert outcome.first_attempt_time == T0 and outcome.last_attempt_time == T0 + 70
    assert queue.get_task("q", "flaky") is None
    assert queue.create(_task("flaky")) is False  # tombstoned like any finished task


def test_no_response_is_a_failed_attempt_without_an_execution(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.create(_task("t"))
    [lease] = queue.lease("q", 1)
    outcome = queue.complete(lease, None, "ConnectionRefusedError")
    assert isinstance(outcome, Rescheduled) and outcome.attempts == 1
    info = queue.get_task("q", "t")
    assert info is not None
    assert (info.attempts, info.response_count, info.last_status) == (1, 0, None)
    assert info.last_error == "ConnectionRefusedError"


def test_age_limit_keeps_retrying_past_max_attempts(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(retry=RetryConfig(2, 100, 10, 10, 0)))
    queue.create(_task("t"))
    outcomes = []
    for _ in range(20):
        [lease] = queue.lease("q", 1)
        outcomes.append(queue.complete(lease, 500))
        if isinstance(outcomes[-1], Finished):
            break
        clock.advance(10)
    # Attempts at 0, 10, ..., 100 s: attempts were used up after the 2nd, age only at 100 s.
    assert len(outcomes) == 11
    last = outcomes[-1]
    assert isinstance(last, Finished) and last.gave_up and last.attempts == 11


def test_complete_twice_counts_once(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.create(_task("t"))
    [lease] = queue.lease("q", 1)
    assert isinstance(queue.complete(lease, 500), Rescheduled)
    assert queue.complete(lease, 500) is None
    info = queue.get_task("q", "t")
    assert info is not None and info.attempts == 1 and info.response_count == 1


# -- crashes and the lease/complete race --------------------------------------------------------


def test_expired_lease_is_a_failed_attempt_and_is_dispatched_again(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(_config(deadline=60))
    queue.create(_task("t"))
    [lost] = queue.lease("q", 1)  # the dispatcher "crashes" holding this lease
    assert lost.lease_expires == T0 + 60
    clock.advance(59)
    assert queue.lease("q", 1) == []
    assert queue.stats()[0].in_flight == 1
    clock.advance(1)
    assert queue.lease("q", 1) == []  # deadline passed: retried after the first backoff
    assert queue.stats()[0] == QueueStats("q", "RUNNING", 1, 0)
    info = queue.get_task("q", "t")
    assert info is not None and info.schedule_time == T0 + 70
    assert info.last_error == "dispatch deadline exceeded"
    clock.advance(10)
    [again] = queue.lease("q", 1)
    assert (again.retry_count, again.execution_count) == (1, 0)
    # The late answer to the lost lease must not count, nor end the new dispatch.
    assert queue.complete(lost, 200) is None
    assert queue.get_task("q", "t") is not None
    finished = queue.complete(again, 200)
    assert isinstance(finished, Finished) and finished.attempts == 2


def test_expired_last_attempt_gives_up(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(_config(deadline=60, retry=RetryConfig(1, 0, 10, 10, 0)))
    queue.create(_task("t"))
    queue.lease("q", 1)
    clock.advance(60)
    assert queue.lease("q", 1) == []
    assert queue.get_task("q", "t") is None
    assert queue.create(_task("t")) is False


def test_crashed_process_leaves_a_lease_that_is_retried(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "queue.sqlite"
    queue = SqliteTaskQueue(db, clock, [_config(deadline=30)])
    queue.create(_task("t"))
    script = (
        "import os, sys\n"
        "from imgpipe.clock import FakeClock\n"
        "from imgpipe.local.taskqueue import SqliteTaskQueue\n"
        f"queue = SqliteTaskQueue(sys.argv[1], FakeClock({T0}), [])\n"
        "print(len(queue.lease('q', 10)), flush=True)\n"
        "os._exit(9)  # no complete, no clean close\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SHARED)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(db)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (9, "1"), done.stderr
    assert queue.lease("q", 10) == []
    assert queue.stats()[0].in_flight == 1
    clock.advance(30 + 10)
    [lease] = queue.lease("q", 10)
    assert lease.name == "t" and lease.retry_count == 1


def test_two_connections_never_lease_the_same_task(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "queue.sqlite"
    queues = [SqliteTaskQueue(db, clock, [_config()]) for _ in range(2)]
    _fill(queues[0], 400)
    taken: list[list[Lease]] = [[], []]

    def drain(i: int) -> None:
        while batch := queues[i].lease("q", 7):
            taken[i].extend(batch)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = [lease.name for leases in taken for lease in leases]
    assert len(names) == 400 and len(set(names)) == 400


# -- queue administration -----------------------------------------------------------------------


def test_paused_queue_accepts_tasks_but_dispatches_none(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.pause("q")
    assert queue.create(_task("t"))
    assert queue.lease("q", 10) == []
    assert queue.next_due("q") is None
    assert queue.stats()[0] == QueueStats("q", "PAUSED", 1, 0)
    queue.resume("q")
    assert [lease.name for lease in queue.lease("q", 10)] == ["t"]


def test_run_task_ignores_pause_rate_and_schedule(make_queue: MakeQueue) -> None:
    queue = make_queue(_config(rate=1, burst=1))
    queue.create(_task("first"))
    queue.create(_task("later", schedule_time=T0 + 3600))
    queue.lease("q", 10)  # spends the only token
    queue.pause("q")
    assert queue.run_task("q", "later") is True
    assert queue.run_task("q", "missing") is False
    [lease] = queue.lease("q", 10)
    assert lease.name == "later" and lease.eta == T0
    assert queue.run_task("q", "later") is False  # in flight


def test_purge_deletes_tasks_created_before_the_call(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    _fill(queue, 3)
    [in_flight] = queue.lease("q", 1)
    clock.advance(1)
    assert queue.purge("q") == 3
    assert queue.create(_task("new"))
    assert queue.complete(in_flight, 200) is None
    assert queue.stats()[0].depth == 1
    assert queue.create(_task("t0")) is False  # purged names stay reserved


def test_update_queue_changes_limits(make_queue: MakeQueue) -> None:
    queue = make_queue(_config(rate=10, burst=10))
    _fill(queue, 20)
    cfg = queue.update_queue("q", max_burst_size=2, max_attempts=2)
    assert cfg.rate.max_burst_size == 2 and cfg.retry.max_attempts == 2
    assert queue.get_queue("q").config == cfg
    assert len(queue.lease("q", 100)) == 2  # the stored tokens shrank to the new burst
    with pytest.raises(ValueError, match="max_concurrent_dispatches"):
        queue.update_queue("q", max_concurrent_dispatches=0)
    with pytest.raises(UnknownQueue):
        queue.update_queue("nope", max_attempts=1)


# -- persistence --------------------------------------------------------------------------------


def test_everything_survives_reopening_the_database(
    tmp_path: Path, clock: FakeClock, make_queue: MakeQueue
) -> None:
    queue = make_queue(_config(rate=1, burst=3))
    _fill(queue, 5)
    [flaky, *_] = queue.lease("q", 10)
    queue.complete(flaky, 500)
    queue.update_queue("q", max_attempts=9)
    queue.pause("q")
    queue.close()

    # Configs passed on reopening only create missing queues; stored ones win.
    reopened = make_queue(_config(rate=100, burst=100), _config("extra"))
    assert [(i.config.name, i.state) for i in reopened.list_queues()] == [
        ("extra", "RUNNING"),
        ("q", "PAUSED"),
    ]
    cfg = reopened.get_queue("q").config
    assert (cfg.retry.max_attempts, cfg.rate.max_dispatches_per_second) == (9, 1)
    assert reopened.stats()[1] == QueueStats("q", "PAUSED", 5, 2)
    info = reopened.get_task("q", flaky.name)
    assert info is not None and info.attempts == 1 and info.last_status == 500
    reopened.resume("q")
    assert reopened.lease("q", 10) == []  # the bucket was spent before closing
    clock.advance(1)
    assert len(reopened.lease("q", 10)) == 1


def test_schema_is_versioned(tmp_path: Path, make_queue: MakeQueue) -> None:
    make_queue().close()
    with sqlite3.connect(tmp_path / "queue.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(taskqueue._MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    make_queue().close()  # migrating again is a no-op


def test_a_version_1_database_gains_the_overload_columns(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(taskqueue._MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO queues (name, config, tokens, tokens_at) VALUES ('q', ?, 100, ?)",
            (taskqueue._dump_config(_config()), T0),
        )
    queue = SqliteTaskQueue(path, clock, [_config()])
    queue.create(_task("t"))
    [lease] = queue.lease("q", 1)
    assert isinstance(queue.complete(lease, 503, retry_after=30), Rescheduled)
    queue.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(taskqueue._MIGRATIONS)
        row = conn.execute("SELECT slowdown, throttled_until FROM queues").fetchone()
        assert row == (0.5, T0 + 30)
