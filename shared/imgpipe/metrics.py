"""Prometheus metrics. Counters of this process (tasks, durations, stages, output bytes) count
since it started; the gauges that describe stored state (images per state, dead letters,
queue depth and in flight) are read from the stores at each scrape, so they survive a restart
and are the same from any instance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from imgpipe.imaging import Processed
    from imgpipe.pipeline import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REGISTRY = CollectorRegistry()
TASKS = Counter(
    "imgpipe_tasks", "Task dispatches by outcome", ["queue", "outcome"], registry=_REGISTRY
)
DURATION = Histogram(
    "imgpipe_task_duration_seconds",
    "Time a task took in the worker",
    ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=_REGISTRY,
)
STAGES = Counter(
    "imgpipe_stage_seconds", "CPU seconds per imgcore stage", ["stage"], registry=_REGISTRY
)
OUTPUT_BYTES = Counter(
    "imgpipe_output_bytes", "Bytes of renditions written", ["format"], registry=_REGISTRY
)


def record_task(queue: str, outcome: str, seconds: float) -> None:
    TASKS.labels(queue, outcome).inc()
    DURATION.labels(queue).observe(seconds)


def record_render(processed: Processed) -> None:
    for stage, seconds in processed.timings.items():
        STAGES.labels(stage).inc(seconds)
    for output in processed.outputs:
        OUTPUT_BYTES.labels(output.format).inc(len(output.data))


class _StoredState(Collector):
    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        images = GaugeMetricFamily("imgpipe_images", "Images per state", labels=["state"])
        for state, count in self._svc.state.count_by_state().items():
            images.add_metric([state], count)
        yield images
        yield GaugeMetricFamily(
            "imgpipe_dead_letters",
            "Dead letters waiting for a retry",
            value=self._svc.state.count_dead_letters(),
        )
        depth = GaugeMetricFamily("imgpipe_queue_depth", "Tasks in the queue", labels=["queue"])
        flight = GaugeMetricFamily(
            "imgpipe_queue_in_flight", "Tasks being dispatched", labels=["queue"]
        )
        for queue in self._svc.queue.stats():
            if queue.depth is not None:
                depth.add_metric([queue.name], queue.depth)
            if queue.in_flight is not None:
                flight.add_metric([queue.name], queue.in_flight)
        yield depth
        yield flight


def exposition(svc: Services, *, counters: bool = True) -> bytes:
    """The text format. `counters=False` (a Cloud Function, where each instance counts only
    its own tasks): the stored-state gauges alone."""
    registry = CollectorRegistry()
    registry.register(_StoredState(svc))
    text = generate_latest(registry)
    return generate_latest(_REGISTRY) + text if counters else text
