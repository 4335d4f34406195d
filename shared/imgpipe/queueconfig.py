"""Queue configuration and retry policy: the one source of truth for the local queue, the worker
(which needs `max_attempts` to know its last attempt) and the GCP setup scripts.

Semantics follow /work/shared/cloud-tasks.md (Cloud Tasks v2 RetryConfig / RateLimits)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from imgpipe.cpu import available_cores

# Cloud Tasks limits (queue.proto, quotas page).
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000
MIN_DISPATCH_DEADLINE = 15.0
MAX_DISPATCH_DEADLINE = 30 * 60.0
UNLIMITED_ATTEMPTS = -1
_QUEUE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")

# imgpipe defaults (PRODUCT.md "Queue behaviour").
DEFAULT_QUEUES = ("high", "normal")
DEFAULT_RATE = 50.0
# On GCP `max_burst_size` is output-only (Cloud Tasks derives it from the rate); queues created
# through the API get 100, so the local queue uses the same bucket size.
DEFAULT_BURST = 100
DEFAULT_GCP_CONCURRENCY = 50
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_MAX_DOUBLINGS = 4
DEFAULT_DISPATCH_DEADLINE = 600.0
# Cloud Tasks reserves a deleted or completed task's name for "about 1 hour".
DEFAULT_TOMBSTONE_TTL = 3600.0


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Defaults are Cloud Tasks' own; imgpipe's are in `default_queue_configs`."""

    max_attempts: int = 100  # every attempt incl. the first; -1 = unlimited
    max_retry_duration: float = 0.0  # seconds from the first attempt; 0 = no age limit
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16

    def __post_init__(self) -> None:
        _check(
            self.max_attempts == UNLIMITED_ATTEMPTS or self.max_attempts >= 1,
            f"max_attempts must be -1 (unlimited) or >= 1, got {self.max_attempts}",
        )
        _check(
            math.isfinite(self.max_retry_duration) and self.max_retry_duration >= 0,
            f"max_retry_duration must be >= 0 s (0 = no limit), got {self.max_retry_duration}",
        )
        _check(
            math.isfinite(self.min_backoff) and self.min_backoff >= 0,
            f"min_backoff must be >= 0 s, got {self.min_backoff}",
        )
        _check(
            math.isfinite(self.max_backoff) and self.max_backoff >= self.min_backoff,
            f"max_backoff must be >= min_backoff ({self.min_backoff} s), got {self.max_backoff}",
        )
        _check(
            0 <= self.max_doublings <= 64,
            f"max_doublings must be in 0..64, got {self.max_doublings}",
        )


@dataclass(frozen=True, slots=True)
class RateLimits:
    """`max_dispatches_per_second` may be `math.inf` locally (no token bucket, used by
    benchmarks); `to_gcloud_args` refuses it."""

    max_dispatches_per_second: float = MAX_DISPATCHES_PER_SECOND
    max_burst_size: int = DEFAULT_BURST
    max_concurrent_dispatches: int = 1000

    def __post_init__(self) -> None:
        rate = self.max_dispatches_per_second
        _check(
            rate == math.inf or 0 < rate <= MAX_DISPATCHES_PER_SECOND,
            f"max_dispatches_per_second must be in (0, {MAX_DISPATCHES_PER_SECOND:g}] "
            f"(or inf locally), got {rate}",
        )
        _check(self.max_burst_size >= 1, f"max_burst_size must be >= 1, got {self.max_burst_size}")
        _check(
            1 <= self.max_concurrent_dispatches <= MAX_CONCURRENT_DISPATCHES,
            f"max_concurrent_dispatches must be in 1..{MAX_CONCURRENT_DISPATCHES}, "
            f"got {self.max_concurrent_dispatches}",
        )


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    rate: RateLimits = RateLimits()
    retry: RetryConfig = RetryConfig()
    dispatch_deadline: float = DEFAULT_DISPATCH_DEADLINE
    tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL

    def __post_init__(self) -> None:
        _check(
            bool(_QUEUE_ID.fullmatch(self.name)),
            f"queue name must match [A-Za-z0-9-]{{1,100}}, got {self.name!r}",
        )
        _check(
            MIN_DISPATCH_DEADLINE <= self.dispatch_deadline <= MAX_DISPATCH_DEADLINE,
            f"dispatch_deadline must be in {MIN_DISPATCH_DEADLINE:g}..{MAX_DISPATCH_DEADLINE:g} "
            f"s, got {self.dispatch_deadline}",
        )
        _check(
            math.isfinite(self.tombstone_ttl) and self.tombstone_ttl >= 0,
            f"tombstone_ttl must be >= 0 s, got {self.tombstone_ttl}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Flat field names, the same ones `with_changes` and `imgpipe queue update` take."""
        flat: dict[str, Any] = {"name": self.name}
        for part in (self.rate, self.retry):
            flat.update({f.name: getattr(part, f.name) for f in fields(part)})
        flat["dispatch_deadline"] = self.dispatch_deadline
        flat["tombstone_ttl"] = self.tombstone_ttl
        return flat

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> QueueConfig:
        return cls(
            name=flat["name"],
            rate=RateLimits(**_pick(RateLimits, flat)),
            retry=RetryConfig(**_pick(RetryConfig, flat)),
            dispatch_deadline=flat.get("dispatch_deadline", DEFAULT_DISPATCH_DEADLINE),
            tombstone_ttl=flat.get("tombstone_ttl", DEFAULT_TOMBSTONE_TTL),
        )


def _pick(kind: type[RateLimits | RetryConfig], flat: dict[str, Any]) -> dict[str, Any]:
    return {f.name: flat[f.name] for f in fields(kind) if f.name in flat}


_CHANGEABLE = (
    {f.name for f in fields(RateLimits)}
    | {f.name for f in fields(RetryConfig)}
    | {"dispatch_deadline", "tombstone_ttl"}
)


def with_changes(cfg: QueueConfig, **changes: Any) -> QueueConfig:
    """A validated copy with flat field changes, e.g. `max_attempts=3`."""
    unknown = sorted(set(changes) - _CHANGEABLE)
    _check(not unknown, f"unknown queue setting(s): {', '.join(unknown)}")
    flat = cfg.to_dict()
    flat.update(changes)
    return QueueConfig.from_dict(flat)


def backoff_delay(retry_index: int, retry: RetryConfig) -> float:
    """Delay before retry `retry_index` (0 = the first retry): doubles `max_doublings` times,
    then grows linearly by the last doubled interval, capped at `max_backoff`."""
    _check(retry_index >= 0, f"retry_index must be >= 0, got {retry_index}")
    m, d = retry.min_backoff, retry.max_doublings
    linear_steps = max(0, retry_index - d)
    return float(min(retry.max_backoff, m * 2.0 ** min(retry_index, d) * (linear_steps + 1)))


def should_retry(
    attempts_done: int, first_attempt_time: float, now: float, retry: RetryConfig
) -> bool:
    """False only when BOTH limits are reached: attempts used up (never with -1) and, where an
    age limit is set, the task older than `max_retry_duration` since its first attempt."""
    attempts_used_up = retry.max_attempts != UNLIMITED_ATTEMPTS and (
        attempts_done >= retry.max_attempts
    )
    too_old = retry.max_retry_duration == 0 or (
        now - first_attempt_time >= retry.max_retry_duration
    )
    return not (attempts_used_up and too_old)


def default_queue_configs(
    local: bool, max_attempts: int = DEFAULT_MAX_ATTEMPTS, names: Sequence[str] = DEFAULT_QUEUES
) -> list[QueueConfig]:
    """imgpipe's queues. Locally concurrency is one image per core: rendering is CPU-bound and
    each image also spreads its encodes over the cores (`Settings.render_threads`), so more
    images in flight would only thrash caches and memory."""
    concurrency = available_cores() if local else DEFAULT_GCP_CONCURRENCY
    rate = RateLimits(DEFAULT_RATE, DEFAULT_BURST, concurrency)
    retry = RetryConfig(
        max_attempts=max_attempts,
        max_retry_duration=0.0,
        min_backoff=DEFAULT_MIN_BACKOFF,
        max_backoff=DEFAULT_MAX_BACKOFF,
        max_doublings=DEFAULT_MAX_DOUBLINGS,
    )
    return [QueueConfig(name, rate, retry) for name in names]


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value:g}s"


def to_gcloud_args(cfg: QueueConfig) -> list[str]:
    """Flags for `gcloud tasks queues create|update NAME`. Every flag is always given so that
    `update` converges to this config. `max_burst_size` is output-only on GCP and
    `dispatch_deadline` is set per task by the Cloud Tasks adapter, so neither appears."""
    rate = cfg.rate.max_dispatches_per_second
    _check(math.isfinite(rate), "an unlimited dispatch rate exists only in the local queue")
    return [
        f"--max-dispatches-per-second={rate:g}",
        f"--max-concurrent-dispatches={cfg.rate.max_concurrent_dispatches}",
        f"--max-attempts={cfg.retry.max_attempts}",
        f"--min-backoff={_seconds(cfg.retry.min_backoff)}",
        f"--max-backoff={_seconds(cfg.retry.max_backoff)}",
        f"--max-doublings={cfg.retry.max_doublings}",
        f"--max-retry-duration={_seconds(cfg.retry.max_retry_duration)}",
    ]
