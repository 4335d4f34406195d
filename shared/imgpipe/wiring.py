"""Picks the adapters from Settings: the only place that knows which ports go where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgpipe.clock import SystemClock
from imgpipe.local.blobs import FileBlobStore
from imgpipe.local.state import SqliteStateStore
from imgpipe.local.taskqueue import SqliteTaskQueue
from imgpipe.pipeline import Services
from imgpipe.ports import Clock, EventSink
from imgpipe.queueconfig import QueueConfig, default_queue_configs
from imgpipe.settings import Settings
from imgpipe.webhook import WebhookSink


@dataclass(frozen=True, slots=True)
class LocalRuntime:
    services: Services
    queue: SqliteTaskQueue
    configs: list[QueueConfig]


def queue_configs(settings: Settings) -> list[QueueConfig]:
    return default_queue_configs(
        local=True,
        max_attempts=settings.max_attempts,
        names=(settings.queue_high, settings.queue),
    )


def local_runtime(
    settings: Settings,
    *,
    out_dir: Path | None = None,
    url_prefix: str | None = None,
    clock: Clock | None = None,
    queue_file: str = "queue.db",
) -> LocalRuntime:
    """`out_dir` set: `imgpipe process` (outputs straight under it, originals stay in place).
    Otherwise `imgpipe serve`: everything under IMGPIPE_DATA_DIR."""
    clock = clock or SystemClock()
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    configs = queue_configs(settings)
    queue = SqliteTaskQueue(data / queue_file, clock, configs)
    # The worker reads the queue's stored retry settings at each failure (`retry_config`);
    # the deadline only sizes the sweeper's patience, the longest of the queues'.
    deadline = max(info.config.dispatch_deadline for info in queue.list_queues())
    originals = data / "originals"
    legacy = data / "files" / "originals"
    if legacy.is_dir() and not originals.exists():
        # Data dirs from before originals moved out of the served folder.
        legacy.rename(originals)
    uploads_root = Path(settings.upload_bucket) if settings.upload_bucket else data / "uploads"
    if out_dir is not None:
        blobs = FileBlobStore(out_dir)
        prefix = ""
    else:
        blobs = FileBlobStore(data / "files", url_prefix=url_prefix)
        prefix = "processed/"
    services = Services(
        settings=settings,
        state=SqliteStateStore(data / "state.db"),
        blobs=blobs,
        queue=queue,
        clock=clock,
        originals=FileBlobStore(originals),
        dispatch_deadline=deadline,
        outputs_prefix=prefix,
        uploads=FileBlobStore(uploads_root),
        immutable_outputs=out_dir is None,
        events=event_sinks(settings),
    )
    return LocalRuntime(services, queue, configs)


def event_sinks(settings: Settings) -> tuple[EventSink, ...]:
    if settings.webhook_url and settings.webhook_secret:
        return (WebhookSink(settings.webhook_url, settings.webhook_secret),)
    return ()


def services_for(settings: Settings) -> Services:
    """The admin commands (`status`, `failed`) on whichever backend Settings names."""
    if settings.backend == "gcp":
        from imgpipe.gcp.wiring import gcp_services  # noqa: PLC0415 (gcp libraries optional)

        return gcp_services(settings)
    return local_runtime(settings).services
