""" "Nothing lost, nothing leaked" on the Google Cloud adapters: the Firestore emulator,
fake-gcs-server (directly and behind a failing proxy), and the functions on
functions-framework. Faults are injected by the proxy or by `Faulty` wrappers."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
import uuid
from typing import Any

import gcpenv
import pytest
from gcpharness import SECRET, Deployment, Gcs, make_jpeg
from google.cloud import firestore
from test_gcp_blobs import client_for

from faults import Faulty
from imgpipe import pipeline, tasks
from imgpipe.errors import Internal, TransientError
from imgpipe.gcp.blobs import GcsBlobStore
from imgpipe.gcp.functionapps import ENDPOINTS
from imgpipe.gcp.ingest import FINALIZED, handle_finalized
from imgpipe.gcp.state import FirestoreStateStore
from imgpipe.model import State, image_id_for

DENIED = (
    "imgpipe-runtime@secret-proj.iam.gserviceaccount.com does not have storage.objects.get "
    "access to the Google Cloud Storage object e2e-originals/originals/x. Permission "
    "'storage.objects.get' denied on resource (or it may not exist)."
)
TASK_HEADERS = {
    "Content-Type": "application/json",
    "X-Imgpipe-Task-Secret": SECRET,
    "X-CloudTasks-QueueName": "high",
    "X-CloudTasks-TaskRetryCount": "0",
}


def _leaks(text: str) -> list[str]:
    needles = ("iam.gserviceaccount.com", "storage.objects", "e2e-", "127.0.0.1", "http", "proxy")
    return [n for n in needles if n in text]


# -- 2. error bodies carry no internals ---------------------------------------------------------


def test_own_permission_faults_are_internal_and_outages_generic(gcs: Gcs) -> None:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    gcs.create_bucket(bucket)
    proxy = gcpenv.FlakyProxy(gcs.base)
    try:
        store = GcsBlobStore(client_for(proxy.base), bucket)
        proxy.fail_for(30, 403, DENIED)
        with pytest.raises(Internal) as denied:
            store.get("originals/x")
        assert denied.value.status == 500 and _leaks(denied.value.message) == []
        proxy.fail_for(30, 400, f"Invalid argument for bucket {bucket}")
        with pytest.raises(Internal):
            store.put("a", b"b", content_type="text/plain")
        proxy.fail_for(30, 503)
        with pytest.raises(TransientError) as down:
            store.get("originals/x")
        assert _leaks(down.value.message) == [] and bucket not in down.value.message
    finally:
        proxy.close()


def test_a_worker_answer_never_names_the_account_bucket_or_url(
    deployment: Deployment,
) -> None:
    data = make_jpeg(21)
    status, body = deployment.upload("leak.jpg", data)
    assert status == 202, body
    deployment.wait_image(body["image_id"])
    payload = json.dumps({"image_id": body["image_id"]}).encode()
    try:
        for status_code, expected in ((403, 500), (503, 503)):
            deployment.proxy.fail_for(30, status_code, DENIED)
            status, raw = deployment.call(
                "worker",
                "POST",
                "/tasks/process",
                key=None,
                body=payload,
                headers={**TASK_HEADERS, "X-CloudTasks-TaskName": f"leak-{status_code}"},
            )
            assert status == expected, raw
            assert _leaks(json.dumps(raw)) == [], raw
    finally:
        deployment.proxy.fail_for(0)
    assert "storage.objects.get" in deployment.logs("worker")  # the details are logged


# -- 3. the worker checks a task's auth before it reads or logs its body --------------------------


def test_an_unauthenticated_task_body_is_never_logged(deployment: Deployment) -> None:
    marker = "f" * 16 + uuid.uuid4().hex[:16]
    for headers in ({}, {"X-Imgpipe-Task-Secret": "wrong"}):
        status, body = deployment.call(
            "worker",
            "POST",
            "/tasks/process",
            key=None,
            json_body={"image_id": marker, "object": f"secret/{marker}.jpg"},
            headers=headers,
        )
        assert status in (401, 403), body
    logs = deployment.logs("worker")
    assert "/tasks/process -> 40" in logs
    assert marker not in logs


# -- 11. letters of objects named with '/' survive on Firestore --


def test_an_object_letter_with_slashes_is_kept_on_firestore(in_process: Any) -> None:
    svc = in_process.services
    name = f"{uuid.uuid4().hex}/holiday photos/IMG 0001.jpg"
    body = {
        "object": name,
        "task_name": f"obj-{uuid.uuid4().hex[:8]}",
        "attempts": 3,
        "error": {"code": "unavailable", "message": "down"},
    }
    status, answer = tasks.record_failure(svc, json.dumps(body).encode())
    assert status == 200 and answer["new"] is True, answer
    letters = [d for d in svc.state.list_dead_letters(1000) if d.source_object == name]
    assert len(letters) == 1 and "/" not in letters[0].image_id


# -- 12. sizes come from metadata, before any byte is read --


def test_an_oversize_object_is_refused_without_being_downloaded(in_process: Any) -> None:
    base = in_process.services
    settings = dataclasses.replace(base.settings, max_object_bytes=2000, max_upload_bytes=1000)
    uploads = Faulty(in_process.uploads)
    svc = dataclasses.replace(base, settings=settings, uploads=uploads)
    name = f"big/{uuid.uuid4().hex}.jpg"
    data = make_jpeg(22, (400, 300))
    assert len(data) > 2000
    assert in_process.uploads.put(name, data, content_type="image/jpeg")
    ctx = pipeline.TaskContext(f"t-{uuid.uuid4().hex[:8]}", "normal")
    outcome = pipeline.process_task(svc, json.dumps({"object": name}).encode(), ctx)
    assert outcome.error is not None and outcome.error.code == "file_too_large"
    assert uploads.called("get") == 0
    # The finalize event says the size too: refused and acknowledged, nothing downloaded.
    event = {"bucket": settings.upload_bucket, "name": name, "size": str(len(data))}
    result = handle_finalized(svc, FINALIZED, event)
    assert result["status"] == "failed" and result["code"] == "file_too_large"
    assert uploads.called("get") == 0
    letters = [d for d in base.state.list_dead_letters(1000) if d.source_object == name]
    assert letters and {d.error_code for d in letters} == {"file_too_large"}


# -- 4. a redelivered finalize event creates the task that a failed create never made -------------


def test_a_redelivered_finalize_event_creates_the_missing_task(in_process: Any) -> None:
    queue = Faulty(in_process.services.queue)
    svc = dataclasses.replace(in_process.services, queue=queue)
    name = f"redelivered/{uuid.uuid4().hex}.jpg"
    data = make_jpeg(23)
    in_process.uploads.put(name, data, content_type="image/jpeg")
    event = {"bucket": svc.settings.upload_bucket, "name": name, "size": str(len(data))}
    queue.fail("create", 1)
    with pytest.raises(TransientError):
        handle_finalized(svc, FINALIZED, event)  # Eventarc will deliver it again
    record = svc.state.get_image(image_id_for(data))
    assert record is not None and record.state is State.QUEUED
    assert not svc.queue.exists(record.task_queue, record.task_name)
    result = handle_finalized(svc, FINALIZED, event)
    assert result["status"] == "queued"
    assert svc.queue.exists(record.task_queue, record.task_name)


# -- the functions refuse every caller without the right credentials ------------------------------


def test_every_function_route_refuses_missing_and_wrong_credentials(
    deployment: Deployment,
) -> None:
    api = {
        "upload": [("POST", "/upload"), ("POST", "/uploads/signed-url")],
        "enqueue": [("POST", "/enqueue")],
        "status": [
            ("GET", "/status"),
            ("GET", "/failed"),
            ("POST", "/failed/retry"),
            ("GET", "/jobs/abc"),
            ("GET", "/images/" + "0" * 32),
            ("DELETE", "/images/" + "0" * 32),
        ],
    }
    task = {"worker": "/tasks/process", "failure": "/tasks/failed", "sweeper": "/"}
    assert set(api) | set(task) == set(ENDPOINTS)
    for function, routes in api.items():
        for method, path in routes:
            for key, expected in ((None, 401), ("wrong", 403)):
                status, body = deployment.call(function, method, path, key=key, json_body={})
                assert status == expected, (function, path, body)
                assert set(body) == {"error"}
    for function, path in task.items():
        for headers, expected in (({}, 401), ({"X-Imgpipe-Task-Secret": "wrong"}, 403)):
            status, body = deployment.call(
                function, "POST", path, key=None, headers=headers, json_body={}
            )
            assert status == expected, (function, body)


# -- reconcile: a lost Firestore collection rebuilt from the bucket's metadata.json --------------


def test_reconcile_rebuilds_an_empty_firestore_collection(
    deployment: Deployment, in_process: Any
) -> None:
    data = make_jpeg(24)
    status, body = deployment.upload("reconcile.jpg", data)
    assert status == 202, body
    view = deployment.wait_image(body["image_id"])
    empty = FirestoreStateStore(
        firestore.Client(project=deployment.project), prefix=f"lost{uuid.uuid4().hex[:6]}_"
    )
    svc = dataclasses.replace(in_process.services, state=empty)
    assert svc.state.get_image(view["image_id"]) is None
    counts = pipeline.reconcile(svc)
    assert counts["restored"] >= 1
    rebuilt = pipeline.image_view(svc, view["image_id"])
    assert rebuilt["status"] == "done"
    assert [r["file"] for r in rebuilt["renditions"]] == [r["file"] for r in view["renditions"]]
    assert rebuilt["source"]["original"] == f"originals/{view['image_id']}"
    assert pipeline.reconcile(svc)["restored"] == 0  # a second run changes nothing


# -- 5. on Cloud Run: an instance killed mid-render is taken over by the next attempt at once ----


def test_the_next_attempt_takes_over_from_a_killed_worker_instance(
    deployment: Deployment, in_process: Any
) -> None:

    svc = in_process.services
    data = make_jpeg(25, (4000, 3000))
    record, created = pipeline.register(svc, data, {"upload": "big.jpg"})
    assert created
    body = json.dumps({"image_id": record.image_id}).encode()
    name = f"killed-{uuid.uuid4().hex[:8]}"
    port = gcpenv.free_port()
    twin = deployment.start_function("worker", port)
    url = f"http://127.0.0.1:{port}/tasks/process"
    headers = {**TASK_HEADERS, "X-CloudTasks-TaskName": name}

    def send() -> None:
        with contextlib.suppress(OSError):  # the instance is killed under this request
            gcpenv.http("POST", url, body=body, headers=headers, timeout=30)

    sent = threading.Thread(target=send, daemon=True)
    sent.start()
    deadline = time.monotonic() + 30
    while (svc.state.get_image(record.image_id) or record).state is not State.PROCESSING:
        assert time.monotonic() < deadline, twin.log()
        time.sleep(0.01)
    assert twin.popen is not None
    os.killpg(twin.popen.pid, signal.SIGKILL)  # the instance dies mid-render
    twin.stop()
    # Cloud Tasks retries the same task (the connection dropped): taken over at once, not
    # refused as "being processed" until the 600 s dispatch deadline.
    status, answer = deployment.call(
        "worker",
        "POST",
        "/tasks/process",
        key=None,
        body=body,
        headers={**headers, "X-CloudTasks-TaskRetryCount": "1"},
    )
    assert (status, answer.get("status")) == (200, "done"), answer


# -- events: the functions publish CloudEvents to the Pub/Sub emulator ---------------------------


def _pull_events(deployment: Deployment, pubsub_host: str) -> list[dict[str, Any]]:
    url = f"http://{pubsub_host}/v1/projects/{deployment.project}/subscriptions/events-test"
    status, _, raw = gcpenv.http("POST", f"{url}:pull", json_body={"maxMessages": 100})
    assert status == 200, raw
    received = json.loads(raw).get("receivedMessages", [])
    if received:
        ack = {"ackIds": [m["ackId"] for m in received]}
        gcpenv.http("POST", f"{url}:acknowledge", json_body=ack)
    return [m["message"] for m in received]


def test_functions_publish_events_to_pubsub(deployment: Deployment, pubsub_host: str) -> None:
    data = make_jpeg(26)
    status, body = deployment.upload("event.jpg", data)
    assert status == 202, body
    image_id = body["image_id"]
    deployment.wait_image(image_id)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages += _pull_events(deployment, pubsub_host)
        mine = [m for m in messages if m.get("attributes", {}).get("subject") == image_id]
        if mine:
            break
        time.sleep(0.5)
    assert mine, deployment.logs("worker")
    [message] = mine
    assert message["attributes"]["type"] == "imgpipe.image.v1.done"
    event = json.loads(base64.b64decode(message["data"]))
    assert (event["specversion"], event["type"], event["subject"]) == (
        "1.0",
        "imgpipe.image.v1.done",
        image_id,
    )
    assert event["data"]["status"] == "done" and event["data"]["renditions"]


def test_the_status_function_serves_the_console_listings_and_gauges(
    deployment: Deployment,
) -> None:
    status, _, page = gcpenv.http("GET", deployment.url("status", "/"))
    assert status == 200 and b"<html" in page
    status, body = deployment.call("status", "GET", "/images?limit=2")
    assert status == 200 and len(body["images"]) <= 2
    status, body = deployment.call("status", "GET", "/jobs?limit=2")
    assert status == 200 and "jobs" in body
    status, _, text = gcpenv.http(
        "GET", deployment.url("status", "/metrics"), headers={"X-API-Key": "gcp-test-token"}
    )
    assert status == 200 and b"imgpipe_images{" in text
    assert b"imgpipe_tasks_total" not in text  # per-instance counters are not served here
    status, body = deployment.call("status", "POST", "/queues/normal/pause")
    assert (status, body["name"]) == (200, "normal"), body
    status, body = deployment.call("status", "POST", "/queues/normal/resume")
    assert status == 200, body


def test_the_failure_function_logs_new_dead_letters_for_the_metric(
    deployment: Deployment,
) -> None:
    """setup.sh's log-based metric counts lines with status "dead_letter": a redelivered
    letter must not count twice."""
    letter = {
        "object": f"metric/{uuid.uuid4().hex}.jpg",
        "task_name": f"metric-{uuid.uuid4().hex[:8]}",
        "attempts": 3,
        "error": {"code": "unavailable", "message": "down"},
    }
    headers = {**TASK_HEADERS, "X-CloudTasks-TaskName": letter["task_name"]}
    for _ in range(2):
        status, body = deployment.call(
            "failure", "POST", "/tasks/failed", key=None, json_body=letter, headers=headers
        )
        assert status == 200, body
    time.sleep(0.5)
    lines = [e for e in deployment.log_entries("failure") if e.get("task") == letter["task_name"]]
    assert [e.get("status") for e in lines] == ["dead_letter", "known"], lines
