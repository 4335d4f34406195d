"""Builds the pipeline's Services on Google Cloud from Settings (IMGPIPE_BACKEND=gcp).
The emulator variables (FIRESTORE_EMULATOR_HOST, STORAGE_EMULATOR_HOST) are honoured by the
client libraries themselves; CLOUD_TASKS_EMULATOR_HOST arrives through Settings."""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud import firestore, storage, tasks_v2, tasks_v2beta3  # type: ignore[attr-defined]

from imgpipe.clock import SystemClock
from imgpipe.errors import ConfigError
from imgpipe.gcp.blobs import GcsBlobStore, UrlSigner
from imgpipe.gcp.oidc import OidcVerifier
from imgpipe.gcp.state import FirestoreStateStore
from imgpipe.gcp.taskqueue import CloudTasksQueue, TaskAuthConfig, emulator_clients
from imgpipe.pipeline import Services
from imgpipe.ports import EventSink
from imgpipe.queueconfig import DEFAULT_DISPATCH_DEADLINE
from imgpipe.settings import Settings
from imgpipe.wiring import event_sinks


@dataclass(frozen=True, slots=True)
class GcpRuntime:
    services: Services
    blobs: GcsBlobStore
    uploads: GcsBlobStore | None
    queue: CloudTasksQueue


def _require(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(f"IMGPIPE_BACKEND=gcp needs {name}")
    return value


def gcp_runtime(settings: Settings) -> GcpRuntime:
    project = _require(settings.project, "GOOGLE_CLOUD_PROJECT")
    bucket = _require(settings.bucket, "IMGPIPE_BUCKET")
    worker_url = _require(settings.worker_url, "IMGPIPE_WORKER_URL")
    failure_url = _require(settings.failure_url, "IMGPIPE_FAILURE_URL")

    storage_client = storage.Client(project=project)
    signer = UrlSigner()
    blobs = GcsBlobStore(storage_client, bucket, url_mode=settings.url_mode, signer=signer)
    uploads = (
        GcsBlobStore(storage_client, settings.upload_bucket, signer=signer)
        if settings.upload_bucket
        else None
    )
    originals = GcsBlobStore(
        storage_client, _require(settings.originals_bucket, "IMGPIPE_ORIGINALS_BUCKET")
    )

    if settings.cloud_tasks_emulator_host:
        tasks_client, stats_client = emulator_clients(settings.cloud_tasks_emulator_host)
    else:
        tasks_client, stats_client = tasks_v2.CloudTasksClient(), tasks_v2beta3.CloudTasksClient()
    oidc = settings.task_auth == "oidc"
    auth = TaskAuthConfig(
        service_account=settings.tasks_service_account if oidc else None,
        audience=settings.oidc_audience if oidc else None,
        secret=None if oidc else settings.task_secret,
    )
    queue = CloudTasksQueue(
        tasks_client,
        project=project,
        location=settings.location,
        urls={"worker": worker_url, "failure": failure_url, "event": event_url(worker_url)},
        queues=[settings.queue_high, settings.queue],
        auth=auth,
        dispatch_deadline=DEFAULT_DISPATCH_DEADLINE,
        stats_client=stats_client,
    )
    services = Services(
        settings=settings,
        state=FirestoreStateStore(
            firestore.Client(project=project, database=settings.firestore_database)
        ),
        blobs=blobs,
        queue=queue,
        clock=SystemClock(),
        originals=originals,
        dispatch_deadline=DEFAULT_DISPATCH_DEADLINE,
        outputs_prefix="processed/",
        uploads=uploads,
        events=_sinks(settings, project),
    )
    return GcpRuntime(services, blobs, uploads, queue)


def event_url(worker_url: str) -> str:
    """Event deliveries go to the worker function, at its /tasks/event path."""
    head, sep, _ = worker_url.rpartition("/tasks/process")
    return f"{head}/tasks/event" if sep else worker_url.rstrip("/") + "/tasks/event"


def _sinks(settings: Settings, project: str) -> tuple[EventSink, ...]:
    sinks: list[EventSink] = list(event_sinks(settings))
    if settings.events_topic:
        from imgpipe.gcp.pubsub import PubSubSink  # noqa: PLC0415 (only with a topic)

        sinks.append(PubSubSink(project, settings.events_topic))
    return tuple(sinks)


def gcp_services(settings: Settings) -> Services:
    return gcp_runtime(settings).services


def oidc_verifier(settings: Settings, own_url: str | None) -> OidcVerifier:
    """The verifier of one task endpoint: audience IMGPIPE_OIDC_AUDIENCE, else its own URL
    (Cloud Tasks' default audience is the target URL)."""
    audience = settings.oidc_audience or own_url
    return OidcVerifier(
        audience=_require(audience, "IMGPIPE_OIDC_AUDIENCE"),
        service_account=_require(settings.tasks_service_account, "IMGPIPE_TASKS_SERVICE_ACCOUNT"),
        certs_url=settings.oidc_certs_url,
    )
