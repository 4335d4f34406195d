"""Events, metrics and the listing endpoints through a real `imgpipe serve`: a local webhook
receiver checks signatures and CloudEvent fields, is down for a while and then up (every
event arrives, none twice by id); /metrics parses back and agrees with /status, and its
stored-state gauges survive a restart."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from serveproc import Server

from corpus import manifest

SECRET = "webhook-secret"
PHOTOS = ["baseline_mongolia.jpeg", "Landscape_3.jpg", "gif_still_crash_test.gif"]


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.refused = 0
        self.down = False
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                with owner.lock:
                    if owner.down:
                        owner.refused += 1
                        self.send_response(503)
                    elif self.headers.get("X-Imgpipe-Signature") != expected:
                        owner.bad_signatures += 1
                        self.send_response(401)
                    else:
                        assert self.headers["Content-Type"] == "application/cloudevents+json"
                        owner.events.append(json.loads(body))
                        self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def of(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _wait(check: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_events_arrive_once_each_signed_even_after_the_receiver_was_down(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {"IMGPIPE_WEBHOOK_URL": receiver.url, "IMGPIPE_WEBHOOK_SECRET": SECRET}
    server = Server(tmp_path / "data", env_extra=env)
    server.data_dir.mkdir()
    server.start()
    try:
        for queue in ("high", "normal"):
            server.cli("queue", "update", queue, "--min-backoff", "0.5", "--max-backoff", "1")
        receiver.down = True
        entries = {e.file: e for e in manifest()}
        ids = []
        for name in PHOTOS:
            reply = server.upload(name, entries[name].path.read_bytes())
            ids.append(reply.json()["image_id"])
        corrupt = server.upload("broken.jpg", entries["truncated.jpg"].path.read_bytes())
        for image_id in ids:
            server.wait_image(image_id)
        _wait(lambda: receiver.refused >= 3)
        receiver.down = False
        _wait(lambda: len(receiver.of("imgpipe.image.v1.done")) == len(ids))
        server.request("DELETE", f"/images/{ids[0]}")
        server.request("DELETE", f"/images/{ids[0]}")  # twice: one event
        _wait(lambda: len(receiver.of("imgpipe.image.v1.deleted")) == 1)
        time.sleep(2)  # anything duplicated would have arrived by now
    finally:
        server.stop()
    assert receiver.bad_signatures == 0
    done = receiver.of("imgpipe.image.v1.done")
    assert sorted(e["subject"] for e in done) == sorted(ids)
    for event in done:
        assert (event["specversion"], event["source"]) == ("1.0", "imgpipe")
        assert event["data"]["image_id"] == event["subject"]
        assert event["data"]["status"] == "done" and event["data"]["renditions"]
    ids_seen = [e["id"] for e in receiver.events]
    assert len(ids_seen) == len(set(ids_seen)), "an event arrived twice"
    [deleted] = receiver.of("imgpipe.image.v1.deleted")
    assert deleted["data"] == {"image_id": ids[0], "status": "deleted"}
    if corrupt.status == 202:  # refused at the door otherwise: no image, no event
        assert len(receiver.of("imgpipe.image.v1.failed")) == 1


def test_a_job_emits_completed_once(tmp_path: Path, receiver: Receiver) -> None:
    env = {"IMGPIPE_WEBHOOK_URL": receiver.url, "IMGPIPE_WEBHOOK_SECRET": SECRET}
    server = Server(tmp_path / "data", env_extra=env)
    folder = server.data_dir / "uploads" / "batch"
    folder.mkdir(parents=True)
    entries = {e.file: e for e in manifest()}
    for name in PHOTOS:
        (folder / name).write_bytes(entries[name].path.read_bytes())
    server.start()
    try:
        job_id = server.request("POST", "/enqueue", json_body={"prefix": "batch/"}).json()["job_id"]
        _wait(lambda: receiver.of("imgpipe.job.v1.completed"))
        time.sleep(1)
        job = server.request("GET", f"/jobs/{job_id}").json()
    finally:
        server.stop()
    [completed] = receiver.of("imgpipe.job.v1.completed")
    assert completed["subject"] == job_id and completed["data"]["status"] == "done"
    assert completed["data"]["total_tasks"] == len(PHOTOS) == job["total_tasks"]
    assert job["eta_seconds"] == 0.0


def _metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = server.request("GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_agree_with_status_and_survive_a_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.data_dir.mkdir()
    server.start()
    try:
        entries = {e.file: e for e in manifest()}
        ids = [server.upload(n, entries[n].path.read_bytes()).json()["image_id"] for n in PHOTOS]
        for image_id in ids:
            server.wait_image(image_id)
        assert server.request("GET", "/metrics", key=None).status == 401
        values = _metrics(server)
        status = server.request("GET", "/status").json()
        for state, count in status["images"].items():
            assert values[("imgpipe_images", (("state", state),))] == count
        assert values[("imgpipe_tasks_total", (("outcome", "done"), ("queue", "high")))] == 3
        assert values[("imgpipe_dead_letters", ())] == len(status["recent_failures"])
        webp = values[("imgpipe_output_bytes_total", (("format", "webp"),))]
        views = [server.request("GET", f"/images/{i}").json() for i in ids]
        assert webp == sum(
            r["bytes"] for v in views for r in v["renditions"] if r["format"] == "webp"
        )
        assert values[("imgpipe_task_duration_seconds_count", (("queue", "high"),))] >= 3
        server.stop()
        server.start()
        after = _metrics(server)
        assert after[("imgpipe_images", (("state", "done"),))] == 3  # stored state: kept
        assert ("imgpipe_tasks_total", (("outcome", "done"), ("queue", "high"))) not in after
    finally:
        server.stop()


def _no_follow(server: Server, path: str, accept: str) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": accept, "X-API-Key": "test-token"})
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        conn.close()


def test_listing_endpoints_page_newest_first(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.data_dir.mkdir()
    server.start()
    try:
        entries = {e.file: e for e in manifest()}
        ids = []
        for name in PHOTOS:
            ids.append(server.upload(name, entries[name].path.read_bytes()).json()["image_id"])
            time.sleep(0.01)
        for image_id in ids:
            server.wait_image(image_id)
        first = server.request("GET", "/images?limit=2").json()
        assert [v["image_id"] for v in first["images"]] == ids[::-1][:2]
        rest = server.request("GET", f"/images?limit=2&cursor={first['next_cursor']}").json()
        assert [v["image_id"] for v in rest["images"]] == [ids[0]] and rest["next_cursor"] is None
        assert server.request("GET", "/images?state=failed").json()["images"] == []
        assert server.request("GET", "/images?limit=201").status == 400
        assert server.request("GET", "/images?cursor=garbage").status == 400
        assert server.request("GET", "/images?state=deleted").status == 400
        # /best: the smallest width rendition at least w wide, in the best accepted format.
        view = server.request("GET", f"/images/{ids[0]}").json()
        widths = sorted({r["width"] for r in view["renditions"] if r["name"].startswith("w")})
        for accept, fmt in (("image/webp,*/*", "webp"), ("image/jpeg", "jpeg"), ("", "jpeg")):
            status, headers = _no_follow(server, f"/images/{ids[0]}/best?w={widths[0] + 1}", accept)
            assert status == 302 and headers["Vary"] == "Accept"
            [chosen] = [r for r in view["renditions"] if r["url"] == headers["Location"]]
            assert (chosen["format"], chosen["width"]) == (fmt, widths[1]), accept
        _, huge = _no_follow(server, f"/images/{ids[0]}/best?w=99999", "*/*")
        assert huge["Location"].endswith(f"w{widths[-1]}.{view['fingerprint'][:8]}.jpg")
        job = server.request("POST", "/enqueue", json_body={"image_ids": ids}).json()
        jobs = server.request("GET", "/jobs").json()["jobs"]
        assert jobs[0]["id"] == job["job_id"] and "eta_seconds" in jobs[0]
        paused = server.request("POST", "/queues/high/pause").json()
        assert paused == {"name": "high", "state": "PAUSED"}
        described = json.loads(server.cli("queue", "describe", "high"))
        assert described["state"] == "PAUSED"
        assert server.request("POST", "/queues/high/resume").json()["state"] == "RUNNING"
        assert server.request("POST", "/queues/nope/pause").status == 404
    finally:
        server.stop()


def test_a_focal_point_renders_the_covers_again(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env_extra={"IMGPIPE_RENDITIONS": "320,200x200:cover"})
    server.data_dir.mkdir()
    server.start()
    try:
        entries = {e.file: e for e in manifest()}
        image_id = server.upload(PHOTOS[1], entries[PHOTOS[1]].path.read_bytes()).json()["image_id"]
        before = server.wait_image(image_id)
        reply = server.request("PATCH", f"/images/{image_id}", json_body={"focus": [0.9, 0.5]})
        assert reply.status == 202 and reply.json()["focus"] == [0.9, 0.5]
        for bad in ({"focus": [2, 0]}, {"focus": "left"}, {"other": 1}):
            assert server.request("PATCH", f"/images/{image_id}", json_body=bad).status == 400
        _wait(lambda: server.request("GET", f"/images/{image_id}").json()["status"] == "done")
        after = server.wait_image(image_id)
    finally:
        server.stop()
    assert after["focus"] == [0.9, 0.5]
    cover = {r["format"]: r for r in after["renditions"] if r["name"] == "200x200-cover"}
    old = {r["format"]: r for r in before["renditions"] if r["name"] == "200x200-cover"}
    assert cover["webp"]["file"] != old["webp"]["file"]  # new bytes, new immutable path
