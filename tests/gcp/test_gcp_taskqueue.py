"""The Cloud Tasks adapter's requests (what the emulator ignores: OIDC fields, dispatch
deadline, names, ALREADY_EXISTS) with a recording client, and real calls to the emulator."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from gcpharness import LOCATION, create_queues
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2, tasks_v2beta3

from imgpipe.errors import InvalidRequest, TransientError
from imgpipe.gcp import queueflags
from imgpipe.gcp.taskqueue import CloudTasksQueue, TaskAuthConfig, emulator_clients
from imgpipe.ports import QueueStats, TaskRequest

WORKER = "https://worker.example/tasks/process"
FAILURE = "https://failure.example/tasks/failed"


class Recorder:
    """Stands in for tasks_v2.CloudTasksClient: records create_task, raises on demand."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def queue_path(self, project: str, location: str, queue: str) -> str:
        return tasks_v2.CloudTasksClient.queue_path(project, location, queue)

    def create_task(self, **kwargs: Any) -> tasks_v2.Task:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        task: tasks_v2.Task = kwargs["task"]
        return task

    def get_queue(self, **kwargs: Any) -> tasks_v2.Queue:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return tasks_v2.Queue(name=kwargs["name"], state=tasks_v2.Queue.State.PAUSED)


def adapter(client: Any, auth: TaskAuthConfig, stats_client: Any = None) -> CloudTasksQueue:
    return CloudTasksQueue(
        client,
        project="proj",
        location="europe-west1",
        urls={"worker": WORKER, "failure": FAILURE},
        queues=["high", "normal"],
        auth=auth,
        dispatch_deadline=600,
        stats_client=stats_client,
    )


def test_oidc_http_task_request() -> None:
    client = Recorder()
    queue = adapter(client, TaskAuthConfig(service_account="tasks@proj.iam.gserviceaccount.com"))
    when = 1_900_000_000.5
    body = b'{"image_id": "ab"}'
    assert queue.create(TaskRequest("high", "0a1b2c-img-ab-f00-g0", "worker", body, when))
    (call,) = client.calls
    assert call["parent"] == "projects/proj/locations/europe-west1/queues/high"
    task: tasks_v2.Task = call["task"]
    assert task.name == f"{call['parent']}/tasks/0a1b2c-img-ab-f00-g0"
    http = task.http_request
    assert http.url == WORKER
    assert http.http_method == tasks_v2.HttpMethod.POST
    assert http.body == body
    assert dict(http.headers) == {"Content-Type": "application/json"}
    assert http.oidc_token.service_account_email == "tasks@proj.iam.gserviceaccount.com"
    assert http.oidc_token.audience == WORKER  # Cloud Tasks' default: the target URL
    assert task.dispatch_deadline == dt.timedelta(seconds=600)
    assert task.schedule_time.timestamp() == pytest.approx(when)


def test_custom_audience_and_failure_target() -> None:
    client = Recorder()
    auth = TaskAuthConfig(service_account="sa@p.iam.gserviceaccount.com", audience="imgpipe")
    queue = adapter(client, auth)
    queue.create(TaskRequest("normal", "dl-x", "failure", b"{}"))
    task: tasks_v2.Task = client.calls[0]["task"]
    assert task.http_request.url == FAILURE
    assert task.http_request.oidc_token.audience == "imgpipe"
    assert "schedule_time" not in task  # unset = now


def test_secret_mode_sends_the_secret_header_and_no_token() -> None:
    client = Recorder()
    queue = adapter(client, TaskAuthConfig(secret="s3cret"))
    queue.create(TaskRequest("high", "n1", "worker", b"{}"))
    http = client.calls[0]["task"].http_request
    assert dict(http.headers) == {
        "Content-Type": "application/json",
        "X-Imgpipe-Task-Secret": "s3cret",
    }
    assert "oidc_token" not in http


def test_already_exists_means_already_queued_and_errors_map() -> None:
    assert not adapter(Recorder(gexc.AlreadyExists("dup")), TaskAuthConfig()).create(
        TaskRequest("high", "n1", "worker", b"{}")
    )
    with pytest.raises(TransientError):
        adapter(Recorder(gexc.ServiceUnavailable("down")), TaskAuthConfig()).create(
            TaskRequest("high", "n1", "worker", b"{}")
        )
    with pytest.raises(TransientError):
        adapter(Recorder(gexc.DeadlineExceeded("slow")), TaskAuthConfig()).create(
            TaskRequest("high", "n1", "worker", b"{}")
        )
    with pytest.raises(InvalidRequest):
        adapter(Recorder(), TaskAuthConfig()).create(TaskRequest("high", "n1", "nowhere", b"{}"))


class BetaStats:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.requests: list[Any] = []

    def get_queue(self, request: Any, **kwargs: Any) -> tasks_v2beta3.Queue:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return tasks_v2beta3.Queue(
            name=request.name,
            state=tasks_v2beta3.Queue.State.RUNNING,
            stats=tasks_v2beta3.QueueStats(tasks_count=12, concurrent_dispatches_count=3),
        )


def test_stats_from_v2beta3_and_fallback() -> None:
    beta = BetaStats()
    queue = adapter(Recorder(), TaskAuthConfig(), stats_client=beta)
    assert queue.stats() == [
        QueueStats("high", "RUNNING", 12, 3),
        QueueStats("normal", "RUNNING", 12, 3),
    ]
    assert list(beta.requests[0].read_mask.paths) == ["name", "state", "stats"]
    fallback = adapter(Recorder(), TaskAuthConfig(), BetaStats(gexc.MethodNotImplemented("no")))
    assert fallback.stats()[0] == QueueStats("high", "PAUSED", None, None)
    broken = adapter(Recorder(gexc.ServiceUnavailable("x")), TaskAuthConfig())
    assert broken.stats()[0] == QueueStats("high", "UNKNOWN", None, None)


def test_against_the_emulator(tasks_host: str) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    create_queues(tasks_host, project, ("high", "normal"))
    client, beta = emulator_clients(tasks_host)
    queue = CloudTasksQueue(
        client,
        project=project,
        location=LOCATION,
        urls={"worker": "http://127.0.0.1:9/tasks/process", "failure": FAILURE},
        queues=["high", "normal", "absent"],
        auth=TaskAuthConfig(secret="x"),
        stats_client=beta,
    )
    client.pause_queue(name=queue.queue_path("high"))
    assert queue.create(
        TaskRequest("high", "abc-img-1", "worker", b"{}", schedule_time=4_000_000_000)
    )
    (stored,) = client.list_tasks(parent=queue.queue_path("high"))
    assert stored.name.endswith("/tasks/abc-img-1")
    # The emulator has no v2beta3 service: state from v2, counts unknown (null in /status).
    assert queue.stats() == [
        QueueStats("high", "PAUSED", None, None),
        QueueStats("normal", "RUNNING", None, None),
        QueueStats("absent", "UNKNOWN", None, None),
    ]


def test_queueflags_prints_the_shared_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert queueflags.main(["high", "--max-attempts", "7"]) == 0
    assert capsys.readouterr().out.split() == [
        "--max-dispatches-per-second=50",
        "--max-concurrent-dispatches=50",
        "--max-attempts=7",
        "--min-backoff=10s",
        "--max-backoff=300s",
        "--max-doublings=4",
        "--max-retry-duration=0s",
    ]
