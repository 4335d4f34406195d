"""Tasks on Cloud Tasks: HTTP target tasks with an OIDC token (or the shared task secret),
named (the pipeline's hashed-prefix names), with `schedule_time` and `dispatch_deadline`.
ALREADY_EXISTS means the task is already queued (or ran within the name's reservation)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import (
    CloudTasksGrpcTransport as BetaGrpcTransport,
)
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from imgpipe.errors import InvalidRequest
from imgpipe.gcp._errors import translated
from imgpipe.ports import QueueStats, TaskRequest
from imgpipe.queueconfig import DEFAULT_DISPATCH_DEADLINE, UNLIMITED_ATTEMPTS, RetryConfig

RETRY_CONFIG_TTL = 60.0  # seconds a queue's retry settings are cached by the worker

TASK_SECRET_HEADER = "X-Imgpipe-Task-Secret"  # noqa: S105 (a header name)


@dataclass(frozen=True, slots=True)
class TaskAuthConfig:
    """How dispatches authenticate: an OIDC token minted by Cloud Tasks for
    `service_account` (audience: `audience` or the target URL), or a shared secret header."""

    service_account: str | None = None
    audience: str | None = None
    secret: str | None = None


def emulator_clients(
    host: str,
) -> tuple[tasks_v2.CloudTasksClient, tasks_v2beta3.CloudTasksClient]:
    """The client library has no emulator switch: build the insecure channel ourselves."""
    channel = grpc.insecure_channel(host)
    return (
        tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel)),
        tasks_v2beta3.CloudTasksClient(transport=BetaGrpcTransport(channel=channel)),
    )


class CloudTasksQueue:
    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        *,
        project: str,
        location: str,
        urls: Mapping[str, str],  # target ("worker" | "failure") -> URL
        queues: Sequence[str],
        auth: TaskAuthConfig,
        dispatch_deadline: float = DEFAULT_DISPATCH_DEADLINE,
        stats_client: tasks_v2beta3.CloudTasksClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._stats_client = stats_client
        self._project = project
        self._location = location
        self._urls = dict(urls)
        self._queues = list(dict.fromkeys(queues))
        self._auth = auth
        self._deadline = dispatch_deadline
        self._timeout = timeout
        self._retry_cache: dict[str, tuple[float, RetryConfig]] = {}
        self._lock = threading.Lock()

    def queue_path(self, queue: str) -> str:
        return self._client.queue_path(self._project, self._location, queue)

    def build(self, task: TaskRequest) -> tasks_v2.Task:
        """The Task message `create` sends (separate so tests can inspect it)."""
        url = self._urls.get(task.target)
        if url is None:
            raise InvalidRequest(f"no URL configured for task target {task.target!r}")
        # Explicit: Cloud Tasks sends application/octet-stream otherwise, the emulator a form.
        headers = {"Content-Type": "application/json"}
        http = tasks_v2.HttpRequest(
            url=url, http_method=tasks_v2.HttpMethod.POST, headers=headers, body=task.body
        )
        if self._auth.service_account:
            http.oidc_token = tasks_v2.OidcToken(
                service_account_email=self._auth.service_account,
                audience=self._auth.audience or url,
            )
        elif self._auth.secret:
            http.headers = {**headers, TASK_SECRET_HEADER: self._auth.secret}
        deadline = duration_pb2.Duration()
        deadline.FromTimedelta(dt.timedelta(seconds=self._deadline))
        message = tasks_v2.Task(
            name=f"{self.queue_path(task.queue)}/tasks/{task.name}",
            http_request=http,
            dispatch_deadline=deadline,
        )
        if task.schedule_time is not None:
            when = timestamp_pb2.Timestamp()
            when.FromDatetime(dt.datetime.fromtimestamp(task.schedule_time, dt.UTC))
            message.schedule_time = when
        return message

    def create(self, task: TaskRequest) -> bool:
        message = self.build(task)
        with translated(f"creating task {task.name} in queue {task.queue}", "task queue"):
            try:
                self._client.create_task(
                    parent=self.queue_path(task.queue), task=message, timeout=self._timeout
                )
            except gexc.AlreadyExists:
                return False
        return True

    def exists(self, queue: str, name: str) -> bool:
        path = f"{self.queue_path(queue)}/tasks/{name}"
        with translated(f"looking up task {name} in queue {queue}", "task queue"):
            try:
                self._client.get_task(name=path, timeout=self._timeout)
            except gexc.NotFound:
                return False
            except gexc.MethodNotImplemented:
                # gcloud-tasks-emulator has no GetTask: look through the queue's list.
                listed = self._client.list_tasks(
                    parent=self.queue_path(queue), timeout=self._timeout
                )
                return any(task.name == path for task in listed)
        return True

    def retry_config(self, queue: str) -> RetryConfig:
        """The queue's own RetryConfig (what setup set from IMGPIPE_MAX_ATTEMPTS, or an
        operator changed since), read through the API and cached for RETRY_CONFIG_TTL."""
        now = time.monotonic()
        with self._lock:
            cached = self._retry_cache.get(queue)
        if cached is not None and now - cached[0] < RETRY_CONFIG_TTL:
            return cached[1]
        with translated(f"reading the retry settings of queue {queue}", "task queue"):
            found = self._client.get_queue(name=self.queue_path(queue), timeout=self._timeout)
        config = _retry_from_proto(found.retry_config)
        with self._lock:
            self._retry_cache[queue] = (now, config)
        return config

    def pause(self, queue: str) -> None:
        with translated(f"pausing queue {queue}", "task queue"):
            self._client.pause_queue(name=self.queue_path(queue), timeout=self._timeout)

    def resume(self, queue: str) -> None:
        with translated(f"resuming queue {queue}", "task queue"):
            self._client.resume_queue(name=self.queue_path(queue), timeout=self._timeout)

    def stats(self) -> list[QueueStats]:
        return [self._queue_stats(name) for name in self._queues]

    def _queue_stats(self, name: str) -> QueueStats:
        path = self.queue_path(name)
        if self._stats_client is not None:
            try:
                beta = self._stats_client.get_queue(
                    request=tasks_v2beta3.GetQueueRequest(
                        name=path,
                        read_mask=field_mask_pb2.FieldMask(paths=["name", "state", "stats"]),
                    ),
                    timeout=self._timeout,
                )
            except gexc.GoogleAPICallError:
                pass  # v2beta3 unavailable (the emulator): state from v2, counts unknown
            else:
                state = tasks_v2beta3.Queue.State(beta.state).name
                if tasks_v2beta3.Queue.pb(beta).HasField("stats"):
                    return QueueStats(
                        name,
                        state,
                        int(beta.stats.tasks_count),
                        int(beta.stats.concurrent_dispatches_count),
                    )
                return QueueStats(name, state, None, None)
        try:
            queue = self._client.get_queue(name=path, timeout=self._timeout)
            state = tasks_v2.Queue.State(queue.state).name
        except gexc.NotFound:
            state = "MISSING"
        except gexc.GoogleAPICallError:
            state = "UNKNOWN"
        return QueueStats(name, state, None, None)


def _seconds(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(getattr(value, "seconds", 0)) + float(getattr(value, "nanos", 0)) / 1e9


def _retry_from_proto(retry: tasks_v2.RetryConfig) -> RetryConfig:
    """Cloud Tasks' field semantics: max_attempts -1 = unlimited, 0 = its default (100)."""
    attempts = int(retry.max_attempts)
    min_backoff = _seconds(retry.min_backoff)
    max_backoff = max(_seconds(retry.max_backoff), min_backoff)
    return RetryConfig(
        max_attempts=UNLIMITED_ATTEMPTS if attempts < 0 else (attempts or 100),
        max_retry_duration=_seconds(retry.max_retry_duration),
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        max_doublings=min(64, max(0, int(retry.max_doublings))),
    )
