"""Every route of a real `imgpipe serve`, walked without a key, with a wrong key and with a
wrong task secret: 401/403 and no data. Originals are never reachable under /files/, and a
publicly served metadata.json names neither the original nor the uploader's file. Malformed
input of any kind is a 400 that changes nothing."""

from __future__ import annotations

import json
import re

from serveproc import Server

from corpus import manifest
from imgpipe.auth import ApiAuth, TaskAuth
from imgpipe.http import create_app

PHOTO = "baseline_mongolia.jpeg"


def _routes() -> list[tuple[str, str, str]]:
    """(method, path, endpoint) for every rule the app has: new routes are walked too."""
    app = create_app(lambda: None, ApiAuth("k"), TaskAuth("secret", "s"), max_upload_bytes=1)  # type: ignore[arg-type, return-value]
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(
            r"<(?:[^:>]+:)?([^>]+)>", lambda m: "0" * 32 if "id" in m[1] else "x", rule.rule
        )
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path, rule.endpoint))
    return found


def _upload_one(server: Server) -> str:
    data = next(e for e in manifest() if e.file == PHOTO).path.read_bytes()
    reply = server.upload("my holiday secret name.jpg", data)
    assert reply.status == 202, reply.body
    image_id: str = reply.json()["image_id"]
    assert server.wait_image(image_id)["status"] == "done"
    return image_id


def test_every_route_refuses_a_missing_or_wrong_key(server: Server) -> None:
    image_id = _upload_one(server)
    routes = _routes()
    assert {e for _, _, e in routes} >= {"api.upload", "api.image", "tasks.process", "api.files"}
    for method, template, endpoint in routes:
        path = template.replace("0" * 32, image_id)
        if endpoint == "api.files":
            continue  # public renditions: checked below
        if endpoint.startswith("console."):
            # The console's own files are public; they carry no data, only the page.
            reply = server.request(method, path, key=None)
            assert reply.status in (200, 404) and image_id not in reply.body.decode()
            continue
        task = endpoint.startswith("tasks.")
        bad = (
            [({}, 401), ({"X-Imgpipe-Task-Secret": "wrong"}, 403)]
            if task
            else [
                ({}, 401),
                ({"X-API-Key": "wrong"}, 403),
                ({"Authorization": "Bearer wrong"}, 403),
            ]
        )
        for headers, expected in bad:
            body = json.dumps({"image_id": image_id}).encode() if method != "GET" else None
            reply = server.request(method, path, body=body, headers=headers, key=None)
            assert reply.status == expected, (method, path, headers, reply.body)
            error = reply.json()
            assert set(error) == {"error"} and image_id not in reply.body.decode(), reply.body
    # Nothing was changed by any of them.
    view = server.request("GET", f"/images/{image_id}").json()
    assert view["status"] == "done"


def test_originals_are_never_served_and_public_metadata_names_no_source(server: Server) -> None:
    image_id = _upload_one(server)
    for path in (
        f"/files/originals/{image_id}",
        f"/files/../originals/{image_id}",
        f"/files/%2e%2e/originals/{image_id}",
        f"/files/processed/../../originals/{image_id}",
        f"/files/processed/{image_id}/../../../originals/{image_id}",
    ):
        reply = server.request("GET", path, key=None)
        assert reply.status in (400, 404), (path, reply.status)
        assert reply.headers.get("Content-Type", "").startswith("application/json"), path
    assert (server.data_dir / "originals" / "originals" / image_id).is_file()
    view = server.request("GET", f"/images/{image_id}").json()
    assert view["source"]["upload"] == "my holiday secret name.jpg"  # with the key: yes
    meta = server.request("GET", f"/files/processed/{image_id}/metadata.json", key=None)
    assert meta.status == 200 and meta.headers["Cache-Control"] == "no-cache"
    text = meta.body.decode()
    assert "secret name" not in text and "originals/" not in text
    for rendition in view["renditions"]:
        reply = server.request("GET", rendition["url"], key=None)
        assert reply.status == 200 and "immutable" in reply.headers["Cache-Control"]


def test_malformed_input_is_400_and_changes_nothing(server: Server) -> None:
    image_id = _upload_one(server)
    before = server.request("GET", f"/images/{image_id}").json()
    raw_bodies = [
        b'{"image_ids": ["%s"], "schedule_time": Infinity}' % image_id.encode(),
        b'{"image_ids": ["%s"], "schedule_time": NaN}' % image_id.encode(),
        b'{"image_ids": ["%s"], "schedule_time": 1e400}' % image_id.encode(),
        json.dumps({"image_ids": [image_id], "schedule_time": 4e9}).encode(),
        json.dumps({"image_ids": [image_id], "schedule_time": "soon"}).encode(),
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b'{"image_ids": ["\xff"]}',
        json.dumps({"prefix": ""}).encode(),
        json.dumps({"prefix": "a\x00b"}).encode(),
        json.dumps({"image_ids": [image_id], "priority": "urgent"}).encode(),
    ]
    for raw in raw_bodies:
        reply = server.request(
            "POST", "/enqueue", body=raw, headers={"Content-Type": "application/json"}
        )
        assert reply.status == 400, (raw[:60], reply.body)
        assert reply.json()["error"]["code"] == "invalid_request"
    for path in ("/files/a%00b", "/files/processed/a%00b"):
        reply = server.request("GET", path, key=None)
        assert reply.status == 400, (path, reply.body)
    data = next(e for e in manifest() if e.file == "Landscape_3.jpg").path.read_bytes()
    reply = server.upload("x.jpg", data, job_id="a/b")
    assert reply.status == 400 and reply.json()["error"]["code"] == "invalid_request"
    reply = server.request("POST", "/failed/retry", body=b"[" * 5000, key="test-token")
    assert reply.status == 400
    after = server.request("GET", f"/images/{image_id}").json()
    assert after == before
    status = server.request("GET", "/status").json()
    assert status["images"]["queued"] == 0 and status["images"]["done"] == 1
