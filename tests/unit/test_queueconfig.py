"""Retry policy and queue settings (cloud-tasks.md "Retry", "Rate and concurrency")."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from imgpipe.queueconfig import (
    QueueConfig,
    RateLimits,
    RetryConfig,
    backoff_delay,
    default_queue_configs,
    should_retry,
    to_gcloud_args,
    with_changes,
)


def test_backoff_matches_the_documented_example() -> None:
    retry = RetryConfig(max_attempts=10, min_backoff=10, max_backoff=300, max_doublings=3)
    assert [backoff_delay(k, retry) for k in range(8)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_backoff_with_imgpipe_defaults_doubles_four_times_then_caps() -> None:
    retry = default_queue_configs(local=True)[0].retry
    assert [backoff_delay(k, retry) for k in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_backoff_without_doublings_grows_linearly() -> None:
    retry = RetryConfig(min_backoff=5, max_backoff=100, max_doublings=0)
    assert [backoff_delay(k, retry) for k in range(4)] == [5, 10, 15, 20]


def test_backoff_rejects_negative_index() -> None:
    with pytest.raises(ValueError, match="retry_index"):
        backoff_delay(-1, RetryConfig())


def test_retry_stops_after_max_attempts_without_age_limit() -> None:
    retry = RetryConfig(max_attempts=5, max_retry_duration=0)
    assert [should_retry(n, 0.0, 0.0, retry) for n in range(1, 7)] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("attempts", "age", "expected"),
    [
        (2, 10.0, True),  # neither limit reached
        (3, 10.0, True),  # attempts used up, but younger than max_retry_duration
        (2, 100.0, True),  # old enough, but attempts left
        (3, 60.0, False),  # both reached (age limit inclusive)
        (4, 100.0, False),
    ],
)
def test_retry_stops_only_when_both_limits_are_reached(
    attempts: int, age: float, expected: bool
) -> None:
    retry = RetryConfig(max_attempts=3, max_retry_duration=60)
    assert should_retry(attempts, 1000.0, 1000.0 + age, retry) is expected


def test_unlimited_attempts_retry_forever_even_past_the_age_limit() -> None:
    retry = RetryConfig(max_attempts=-1, max_retry_duration=60)
    assert should_retry(10_000, 0.0, 1e9, retry)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RetryConfig(max_attempts=0), "max_attempts"),
        (lambda: RetryConfig(max_attempts=-2), "max_attempts"),
        (lambda: RetryConfig(max_retry_duration=-1), "max_retry_duration"),
        (lambda: RetryConfig(min_backoff=-1), "min_backoff"),
        (lambda: RetryConfig(min_backoff=10, max_backoff=5), "max_backoff"),
        (lambda: RetryConfig(max_doublings=-1), "max_doublings"),
        (lambda: RateLimits(max_dispatches_per_second=0), "max_dispatches_per_second"),
        (lambda: RateLimits(max_dispatches_per_second=501), "max_dispatches_per_second"),
        (lambda: RateLimits(max_burst_size=0), "max_burst_size"),
        (lambda: RateLimits(max_concurrent_dispatches=0), "max_concurrent_dispatches"),
        (lambda: RateLimits(max_concurrent_dispatches=5001), "max_concurrent_dispatches"),
        (lambda: QueueConfig("bad name"), "queue name"),
        (lambda: QueueConfig("q", dispatch_deadline=14), "dispatch_deadline"),
        (lambda: QueueConfig("q", dispatch_deadline=1801), "dispatch_deadline"),
        (lambda: QueueConfig("q", tombstone_ttl=-1), "tombstone_ttl"),
    ],
)
def test_out_of_range_settings_are_refused_with_their_name(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_cloud_tasks_defaults_and_limits_are_accepted() -> None:
    retry = RetryConfig()
    assert (retry.max_attempts, retry.min_backoff, retry.max_backoff) == (100, 0.1, 3600)
    assert retry.max_doublings == 16 and retry.max_retry_duration == 0
    rate = RateLimits()
    assert (rate.max_dispatches_per_second, rate.max_burst_size) == (500, 100)
    assert RateLimits(500, 1, 5000).max_concurrent_dispatches == 5000
    assert QueueConfig("q", dispatch_deadline=15).dispatch_deadline == 15
    assert QueueConfig("q", dispatch_deadline=1800).dispatch_deadline == 1800


def test_default_queue_configs_gcp() -> None:
    configs = default_queue_configs(local=False)
    assert [c.name for c in configs] == ["high", "normal"]
    for cfg in configs:
        assert cfg.rate == RateLimits(50, 100, 50)
        assert cfg.retry == RetryConfig(5, 0, 10, 300, 4)
        assert (cfg.dispatch_deadline, cfg.tombstone_ttl) == (600, 3600)


def test_default_queue_configs_local_uses_one_image_per_usable_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The cores this process may run on (a container's or taskset's share), not the machine's.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 2, 3, 5, 6, 7}, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    configs = default_queue_configs(local=True, max_attempts=3, names=("fast", "slow"))
    assert [c.name for c in configs] == ["fast", "slow"]
    assert all(c.rate.max_concurrent_dispatches == 6 for c in configs)
    assert all(c.retry.max_attempts == 3 for c in configs)


def test_gcloud_args_for_the_default_queue() -> None:
    assert to_gcloud_args(default_queue_configs(local=False)[0]) == [
        "--max-dispatches-per-second=50",
        "--max-concurrent-dispatches=50",
        "--max-attempts=5",
        "--min-backoff=10s",
        "--max-backoff=300s",
        "--max-doublings=4",
        "--max-retry-duration=0s",
    ]


def test_gcloud_args_keep_fractional_seconds_and_refuse_unlimited_rate() -> None:
    cfg = QueueConfig("q", RateLimits(2.5, 10, 7), RetryConfig(-1, 90, 0.1, 3600, 16))
    assert "--min-backoff=0.1s" in to_gcloud_args(cfg)
    assert "--max-dispatches-per-second=2.5" in to_gcloud_args(cfg)
    assert "--max-attempts=-1" in to_gcloud_args(cfg)
    unlimited = QueueConfig("q", RateLimits(math.inf, 10, 7))
    with pytest.raises(ValueError, match="unlimited"):
        to_gcloud_args(unlimited)


def test_with_changes_validates_and_round_trips() -> None:
    cfg = default_queue_configs(local=False)[0]
    changed = with_changes(cfg, max_attempts=3, max_dispatches_per_second=10)
    assert changed.retry.max_attempts == 3 and changed.rate.max_dispatches_per_second == 10
    assert changed.retry.min_backoff == cfg.retry.min_backoff
    assert QueueConfig.from_dict(changed.to_dict()) == changed
    with pytest.raises(ValueError, match="unknown queue setting"):
        with_changes(cfg, colour="red")
    with pytest.raises(ValueError, match="max_backoff"):
        with_changes(cfg, max_backoff=1)
