"""End to end on the emulators: the real functions under functions-framework, tasks through
gcloud-tasks-emulator, blobs in fake-gcs-server, state in the Firestore emulator."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gcpenv
import pytest
from gcpharness import (
    ORIGINALS_BUCKET,
    SECRET,
    TASKS_SA,
    TOKEN,
    Deployment,
    SigningKey,
    make_jpeg,
)

from imgpipe import pipeline
from imgpipe.model import State, image_id_for

pytestmark = pytest.mark.usefixtures("deployment")


def assert_done(dep: Deployment, view: dict[str, Any], widths: set[int]) -> None:
    assert view["status"] == "done", view
    palette = view["palette"]
    assert palette["seed"].startswith("#") and palette["thumbhash"]
    assert 1 <= len(palette["colors"]) <= 8
    assert {r["width"] for r in view["renditions"]} == widths
    assert {r["format"] for r in view["renditions"]} == {"jpeg", "webp"}
    for rendition in view["renditions"]:
        status, _headers, body = gcpenv.http("GET", rendition["url"])
        assert status == 200, rendition
        assert len(body) == rendition["bytes"]
    base = dep.env["STORAGE_EMULATOR_HOST"]
    meta_url = f"{base}/{dep.bucket}/processed/{view['image_id']}/metadata.json"
    status, _, body = gcpenv.http("GET", meta_url)
    assert status == 200
    metadata = json.loads(body)
    assert metadata["image_id"] == view["image_id"]
    assert metadata["palette"] == palette
    # The public bucket's metadata.json names neither the original nor the uploader's file.
    assert set(metadata["source"]) == {"format", "width", "height", "orientation", "bytes"}
    assert "original" not in body.decode() and "upload" not in metadata["source"]
    # Originals live in their own (private) bucket, never in the public outputs bucket.
    image_id = view["image_id"]
    assert gcpenv.http("GET", f"{base}/{dep.bucket}/originals/{image_id}")[0] == 404
    assert gcpenv.http("GET", f"{base}/{ORIGINALS_BUCKET}/originals/{image_id}")[0] == 200


def object_meta(dep: Deployment, path: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(path, safe="")
    status, _, body = gcpenv.http(
        "GET", f"{dep.env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{dep.bucket}/o/{quoted}"
    )
    assert status == 200, body
    meta: dict[str, Any] = json.loads(body)
    return meta


def test_upload_to_done(deployment: Deployment) -> None:
    data = make_jpeg(1)
    status, body = deployment.upload("one.jpg", data)
    assert status == 202, body
    image_id = body["image_id"]
    assert image_id == image_id_for(data)
    assert body == {"image_id": image_id, "status": "queued", "status_url": f"/images/{image_id}"}
    view = deployment.wait_image(image_id)
    assert_done(deployment, view, {320, 480})
    assert view["attempts"] == 1
    [webp] = [r for r in view["renditions"] if r["name"] == "w320" and r["format"] == "webp"]
    meta = object_meta(deployment, f"processed/{image_id}/{webp['file']}")
    assert meta["contentType"] == "image/webp"
    assert meta["cacheControl"] == "public, max-age=31536000, immutable"
    # The same bytes again: already known, 200 with the current state, nothing queued.
    status, again = deployment.upload("copy.jpg", data)
    assert status == 200 and again["status"] == "done"
    # /status: per-queue state (no v2beta3 in the emulator: null counts), image counts.
    status, summary = deployment.call("status", "GET", "/status")
    assert status == 200
    assert {q["name"]: q["depth"] for q in summary["queues"]} == {"high": None, "normal": None}
    assert summary["images"]["done"] >= 1
    # Worker logs are JSON with the task's fields.
    entries = [e for e in deployment.log_entries("worker") if e.get("image_id") == image_id]
    assert entries and entries[0]["severity"] == "INFO"
    assert entries[0]["attempt"] == 1 and entries[0]["task"].endswith("-g0")


def test_enqueue_job_and_job_progress(deployment: Deployment) -> None:
    data = make_jpeg(2)
    status, body = deployment.upload("two.jpg", data)
    assert status == 202
    image_id = body["image_id"]
    deployment.wait_image(image_id)
    status, job = deployment.call(
        "enqueue", "POST", "/enqueue", json_body={"image_ids": [image_id], "job_name": "again"}
    )
    assert status == 202 and job["total_tasks"] == 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, progress = deployment.call("status", "GET", f"/jobs/{job['job_id']}")
        assert status == 200
        if progress["status"] == "done":
            break
        time.sleep(0.3)
    assert progress["skipped_tasks"] == 1  # already done under this configuration
    assert progress["progress_percentage"] == 100.0


def test_signed_url_upload_goes_through_finalize(deployment: Deployment) -> None:
    data = make_jpeg(3, (700, 500))
    status, signed = deployment.call(
        "upload",
        "POST",
        "/uploads/signed-url",
        json_body={"filename": "../holiday photo.jpg", "content_type": "image/jpeg"},
    )
    assert status == 200, signed
    assert signed["method"] == "PUT"
    assert signed["headers"]["x-goog-content-length-range"] == f"0,{512 * 1024 * 1024}"
    assert signed["object"].endswith("/holiday_photo.jpg")
    assert "X-Goog-Signature=" in signed["url"]
    status, _, body = gcpenv.http("PUT", signed["url"], body=data, headers=signed["headers"])
    assert status == 200, body
    image_id = image_id_for(data)
    deadline = time.monotonic() + 60
    while deployment.call("status", "GET", f"/images/{image_id}")[0] != 200:
        assert time.monotonic() < deadline, deployment.logs("ingest")
        time.sleep(0.3)
    view = deployment.wait_image(image_id)
    assert_done(deployment, view, {320, 640})
    assert view["source"]["object"] == signed["object"]
    assert deployment.relay is not None
    assert (signed["object"], 204) in deployment.relay.delivered or (
        signed["object"],
        200,
    ) in deployment.relay.delivered


def test_corrupt_file_is_dead_lettered_without_retries(deployment: Deployment) -> None:
    data = make_jpeg(4)[:1500]  # a valid header, then the file stops
    status, body = deployment.upload("broken.jpg", data)
    assert status == 202, body
    image_id = body["image_id"]
    view = deployment.wait_image(image_id, ("failed",))
    assert view["error"]["code"] == "corrupt_image"
    assert view["attempts"] == 1
    status, failed = deployment.call("status", "GET", "/failed")
    letters = [d for d in failed["failed"] if d["image_id"] == image_id]
    assert len(letters) == 1 and letters[0]["attempts"] == 1
    time.sleep(1.5)  # the emulator would have re-dispatched a failed attempt by now
    runs = [e for e in deployment.log_entries("worker") if e.get("image_id") == image_id]
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    # A retry of the dead letter re-enqueues it under a new generation; it fails again.
    status, retried = deployment.call(
        "status", "POST", "/failed/retry", json_body={"image_ids": [image_id]}
    )
    assert status == 202 and retried["total_tasks"] == 1
    deployment.wait_image(image_id, ("failed",))


def test_transient_storage_failure_is_retried_then_done(deployment: Deployment) -> None:
    data = make_jpeg(5)
    # Longer than the storage client's own retry window (5 s): the first attempt fails with
    # 503 and Cloud Tasks (the emulator) dispatches it again.
    deployment.proxy.fail_for(7)
    status, body = deployment.upload("flaky.jpg", data)
    assert status == 202, body
    image_id = body["image_id"]
    view = deployment.wait_image(image_id, timeout=120)
    assert view["status"] == "done", view
    assert view["attempts"] >= 2
    assert deployment.proxy.failed > 0
    runs = [e for e in deployment.log_entries("worker") if e.get("image_id") == image_id]
    assert any(e["http_status"] == 503 and e["code"] == "unavailable" for e in runs), runs
    assert runs[-1]["status"] == "done"


def test_two_workers_on_the_same_task(deployment: Deployment, in_process: Any) -> None:
    svc: pipeline.Services = in_process.services
    data = make_jpeg(6, (900, 600))
    record, created = pipeline.register(svc, data, {"upload": "race.jpg"})
    assert created and record.state is State.QUEUED
    job_id = pipeline.new_job(svc, "race")
    svc.state.add_job_task(job_id, record.image_id, record.image_id)
    body = json.dumps({"image_id": record.image_id, "job_id": job_id}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Imgpipe-Task-Secret": SECRET,
        "X-CloudTasks-TaskName": "race-task",
        "X-CloudTasks-QueueName": "high",
        "X-CloudTasks-TaskRetryCount": "0",
    }
    # Two worker instances (two processes, like two Cloud Functions instances), one delivery
    # each, released together.
    port = gcpenv.free_port()
    twin = deployment.start_function("worker", port, STORAGE_EMULATOR_HOST=deployment.proxy.base)
    urls = [deployment.url("worker", "/tasks/process"), f"http://127.0.0.1:{port}/tasks/process"]
    barrier = threading.Barrier(2)

    def run(url: str) -> tuple[int, dict[str, Any]]:
        barrier.wait()
        status, _, raw = gcpenv.http("POST", url, body=body, headers=headers)
        return status, json.loads(raw)

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run, urls))
    finally:
        twin.stop()
    done = [r for r in results if r[0] == 200 and r[1]["status"] == "done"]
    assert len(done) == 1, results
    other = next(r for r in results if r is not done[0])
    assert other[0] == 409 or other[1]["status"] == "skipped", results
    job = svc.state.get_job(job_id)
    assert job is not None and job.counts == {"done": 1}
    final = svc.state.get_image(record.image_id)
    assert final is not None and final.state is State.DONE and final.attempts == 1
    outputs = list(svc.blobs.list(f"processed/{record.image_id}/"))
    assert len(outputs) == 2 * 2 + 1  # w320, w640 in two formats, metadata.json
    for blob in outputs:  # each object written once: its first generation, never replaced
        assert object_meta(deployment, blob.path)["metageneration"] == "1"


def test_routes_are_per_function_and_errors_are_json(deployment: Deployment) -> None:
    status, body = deployment.call("worker", "GET", "/status")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = deployment.call("status", "POST", "/upload")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = deployment.call("status", "GET", "/status", key=None)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = deployment.call("status", "GET", "/status", key="wrong")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = deployment.call("status", "GET", "/images/" + "0" * 32)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = deployment.call("worker", "POST", "/tasks/process", json_body={})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = deployment.call("enqueue", "POST", "/enqueue", json_body={"image_ids": ["nope"]})
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, body = deployment.call(
        "upload", "POST", "/uploads/signed-url", json_body={"content_type": "text/html"}
    )
    assert status == 400
    status, body = deployment.upload("notes.txt", b"just some text, not an image")
    assert status == 415 and body["error"]["code"] == "unsupported_format"
    status, body = deployment.call(
        "sweeper", "POST", "/", key=None, headers={"X-Imgpipe-Task-Secret": SECRET}
    )
    assert status == 200 and (body["requeued"], body["dead_lettered"]) == (0, 0)


def test_worker_with_oidc(
    deployment: Deployment, jwks: gcpenv.JwksServer, signing_key: SigningKey
) -> None:
    port = gcpenv.free_port()
    worker_url = f"http://127.0.0.1:{port}/tasks/process"
    proc = deployment.start_function(
        "worker",
        port,
        IMGPIPE_TASK_AUTH="oidc",
        IMGPIPE_TASKS_SERVICE_ACCOUNT=TASKS_SA,
        IMGPIPE_OIDC_CERTS_URL=jwks.url,
        IMGPIPE_WORKER_URL=worker_url,
    )
    try:
        body = {"image_id": "f" * 32}  # unknown: skipped, once authenticated

        def call(token: str | None) -> tuple[int, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            status, _, raw = gcpenv.http("POST", worker_url, json_body=body, headers=headers)
            return status, json.loads(raw)

        assert call(signing_key.token(aud=worker_url)) == (
            200,
            {"image_id": "f" * 32, "status": "skipped"},
        )
        refused = {
            "missing": (None, 401),
            "expired": (signing_key.token(aud=worker_url, exp=int(time.time()) - 300), 401),
            "unsigned": (signing_key.token(aud=worker_url).rsplit(".", 1)[0] + ".", 401),
            "audience": (signing_key.token(aud="http://127.0.0.1:1/tasks/process"), 403),
            "account": (signing_key.token(aud=worker_url, email="x@evil.example"), 403),
        }
        for case, (token, expected) in refused.items():
            status, answer = call(token)
            assert status == expected, (case, answer)
            assert answer["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")
    finally:
        proc.stop()


def test_missing_api_token_fails_at_start(deployment: Deployment) -> None:
    port = gcpenv.free_port()
    with pytest.raises(RuntimeError, match="IMGPIPE_API_TOKEN"):
        deployment.start_function("status", port, IMGPIPE_API_TOKEN="")
    assert TOKEN  # the deployment itself runs with one
