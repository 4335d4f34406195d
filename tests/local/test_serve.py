"""`imgpipe serve` as a real subprocess: upload, queue over HTTP, worker, files, errors."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image
from serveproc import SECRET, Server

from corpus import manifest

STATUS_FOR = {"unsupported_format": 415, "corrupt_image": 422, "image_too_large": 422}


def test_upload_renders_every_ok_file(server: Server) -> None:
    ids = {}
    for entry in manifest():
        if entry.expect != "ok" or entry.file.startswith("huge_"):
            continue
        reply = server.upload(entry.file, entry.path.read_bytes())
        assert reply.status == 202, (entry.file, reply.body)
        body = reply.json()
        assert body["status"] == "queued"
        assert body["status_url"] == f"/images/{body['image_id']}"
        ids[entry.file] = body["image_id"]
    for name, image_id in ids.items():
        view = server.wait_image(image_id)
        assert view["status"] == "done", (name, view)
        assert view["palette"]["seed"].startswith("#")
        assert view["renditions"], name
        for rendition in view["renditions"]:
            got = server.request("GET", rendition["url"], key=None)
            assert got.status == 200
            assert (
                got.headers["Content-Type"]
                == {"jpeg": "image/jpeg", "webp": "image/webp"}[rendition["format"]]
            )
            assert "immutable" in got.headers["Cache-Control"]
            with Image.open(io.BytesIO(got.body)) as img:
                assert img.size == (rendition["width"], rendition["height"])


def test_same_bytes_are_one_image(server: Server) -> None:
    data = next(e for e in manifest() if e.file == "baseline_mongolia.jpeg").path.read_bytes()
    first = server.upload("a.jpg", data).json()
    server.wait_image(first["image_id"])
    again = server.upload("b.jpg", data)
    assert again.status == 200
    assert again.json()["image_id"] == first["image_id"]
    assert again.json()["status"] == "done"


def test_reject_files_get_their_codes(server: Server) -> None:
    for entry in manifest():
        if entry.expect != "reject":
            continue
        reply = server.upload(entry.file, entry.path.read_bytes())
        if reply.status == 202:
            # Only a full decode can tell (e.g. truncated scan data): the task fails at once.
            view = server.wait_image(reply.json()["image_id"])
            assert view["status"] == "failed", entry.file
            assert view["attempts"] == 1
            assert view["error"]["code"] in entry.codes, (entry.file, view)
            continue
        error = reply.json()["error"]
        assert error["code"] in entry.codes, (entry.file, error)
        assert reply.status == STATUS_FOR[error["code"]]
    failed = server.request("GET", "/failed").json()["failed"]
    assert all(letter["attempts"] == 1 for letter in failed)


def test_auth_is_enforced(server: Server) -> None:
    assert server.request("GET", "/status", key=None).status == 401
    wrong = server.request("GET", "/status", key="nope")
    assert wrong.status == 403
    assert wrong.json()["error"]["code"] == "forbidden"
    bearer = server.request(
        "GET", "/status", key=None, headers={"Authorization": "Bearer test-token"}
    )
    assert bearer.status == 200
    task = server.request("POST", "/tasks/process", json_body={"image_id": "0" * 32}, key=None)
    assert task.status == 401
    assert task.json()["error"]["code"] == "unauthorized"
    ok = server.request(
        "POST",
        "/tasks/process",
        json_body={"image_id": "0" * 32},
        key=None,
        headers={"X-Imgpipe-Task-Secret": SECRET},
    )
    assert ok.status == 200
    assert ok.json()["status"] == "skipped"


def test_bad_requests_get_json_errors(server: Server) -> None:
    cases = [
        ("POST", "/enqueue", b"{not json", 400, "invalid_request"),
        ("POST", "/enqueue", b"[]", 400, "invalid_request"),
        ("POST", "/enqueue", b'{"image_ids": ["' + b"f" * 32 + b'"]}', 404, "not_found"),
        ("GET", "/images/" + "f" * 32, None, 404, "not_found"),
        ("GET", "/images/nonsense", None, 404, "not_found"),
        ("GET", "/jobs/nope", None, 404, "not_found"),
        ("GET", "/no/such/path", None, 404, "not_found"),
        ("POST", "/upload", b"", 400, "invalid_request"),
    ]
    for method, path, body, status, code in cases:
        reply = server.request(method, path, body=body)
        assert reply.status == status, (path, reply.body)
        assert reply.json()["error"]["code"] == code
        assert reply.json()["error"]["message"]


def test_enqueue_job_reports_progress_and_reprocess(server: Server) -> None:
    entries = [e for e in manifest() if e.file in ("Landscape_1.jpg", "png_gray8_basn0g08.png")]
    ids = [server.upload(e.file, e.path.read_bytes()).json()["image_id"] for e in entries]
    for image_id in ids:
        server.wait_image(image_id)
    job = server.request("POST", "/enqueue", json_body={"image_ids": ids, "job_name": "again"})
    assert job.status == 202
    job_id = job.json()["job_id"]
    assert job.json()["total_tasks"] == 2
    for _ in range(200):
        progress = server.request("GET", f"/jobs/{job_id}").json()
        if progress["progress_percentage"] == 100.0:
            break
        time.sleep(0.05)
    assert progress["skipped_tasks"] == 2  # already done under this configuration
    assert progress["status"] == "done"


def test_delete_removes_outputs_and_state(server: Server) -> None:
    entry = next(e for e in manifest() if e.file == "png_palette_basn3p08.png")
    image_id = server.upload(entry.file, entry.path.read_bytes()).json()["image_id"]
    view = server.wait_image(image_id)
    url = view["renditions"][0]["url"]
    assert server.request("DELETE", f"/images/{image_id}").status == 200
    assert server.request("GET", f"/images/{image_id}").status == 404
    assert server.request("GET", url, key=None).status == 404


def test_upload_over_the_byte_limit_is_413(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = Server(data_dir, env_extra={"IMGPIPE_MAX_UPLOAD_BYTES": "50000"})
    server.start()
    try:
        data = next(e for e in manifest() if e.file == "baseline_mongolia.jpeg").path.read_bytes()
        assert len(data) > 50000
        reply = server.upload("big.jpg", data)
        assert reply.status == 413
        assert reply.json()["error"]["code"] == "file_too_large"
        assert server.request("GET", "/status").json()["images"]["queued"] == 0
    finally:
        server.stop()


def test_enqueue_by_prefix_hashes_each_file(server: Server) -> None:
    folder = server.data_dir / "uploads" / "batch1"
    folder.mkdir(parents=True)
    for name in ("Landscape_3.jpg", "gif_still_crash_test.gif", "not-an-image.jpg"):
        (folder / name).write_bytes(next(e for e in manifest() if e.file == name).path.read_bytes())

    def run_job() -> dict[str, object]:
        reply = server.request("POST", "/enqueue", json_body={"prefix": "batch1/"})
        assert reply.status == 202, reply.body
        # The answer comes at once; the listing is walked by tasks and the count grows.
        assert reply.json()["total_tasks"] is None
        job_id = reply.json()["job_id"]
        for _ in range(1200):
            job: dict[str, object] = server.request("GET", f"/jobs/{job_id}").json()
            if job["status"] == "done":
                assert job["total_tasks"] == 3
                return job
            time.sleep(0.05)
        raise AssertionError(job)

    first = run_job()
    assert (first["completed_tasks"], first["failed_tasks"]) == (2, 1)
    second = run_job()
    assert (second["skipped_tasks"], second["failed_tasks"]) == (2, 1)
    failed = server.request("GET", "/failed").json()["failed"]
    assert {f["error"]["code"] for f in failed} == {"unsupported_format"}
