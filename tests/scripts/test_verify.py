"""scripts/verify.sh against the emulator stack of the gcp tests (the seven functions on
functions-framework, the Firestore emulator, fake-gcs-server, the tasks emulator: the gcp
harness's `deployment`). gcloud is the fake, set up by setup.sh and deploy.sh with the
harness's names and pointing at the harness's functions; anonymous reads of the buckets go
through a proxy that grants what the buckets' IAM policies (in the fake) grant to allUsers,
as Cloud Storage does. fake-gcs-server itself has no access control."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gcpenv
import pytest
from gcpharness import ORIGINALS_BUCKET, TOKEN, Deployment
from scriptsenv import Fake, Result

READ_OBJECT = {
    "roles/storage.objectViewer",
    "roles/storage.legacyObjectReader",
    "roles/storage.objectAdmin",
    "roles/storage.admin",
}
LIST_OBJECTS = {
    "roles/storage.objectViewer",
    "roles/storage.legacyBucketReader",
    "roles/storage.objectAdmin",
    "roles/storage.admin",
}


class AnonymousGcs:
    """What an anonymous caller of storage.googleapis.com may read, given the policies the
    fake gcloud holds: GET /BUCKET/OBJECT needs storage.objects.get for allUsers, GET
    /storage/v1/b/BUCKET/o needs storage.objects.list. `leak` buckets are served to anyone."""

    def __init__(self, upstream: str, fake: Fake) -> None:
        self.upstream = upstream.rstrip("/")
        self.fake = fake
        self.leak: set[str] = set()
        self.seen: list[tuple[str, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                owner.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def allowed(self, path: str) -> bool:
        parts = urllib.parse.urlsplit(path).path.lstrip("/").split("/")
        if parts[:3] == ["storage", "v1", "b"] and len(parts) == 5 and parts[4] == "o":
            bucket, needed = parts[3], LIST_OBJECTS
        else:
            bucket, needed = urllib.parse.unquote(parts[0]), READ_OBJECT
        if bucket in self.leak:
            return True
        roles = self.fake.state()["policies"].get(f"bucket:{bucket}", {})
        return any("allUsers" in roles.get(role, []) for role in needed)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        if self.allowed(request.path):
            status, headers, body = gcpenv.http("GET", self.upstream + request.path)
            content_type = headers.get("Content-Type", "application/octet-stream")
        else:
            status, content_type = 401, "application/json"
            body = json.dumps(
                {"error": {"code": 401, "message": "Anonymous caller does not have access."}}
            ).encode()
        self.seen.append((request.path, status))
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


NAMES = {
    "PROJECT": "imgpipe-e2e",
    "BUCKET": "e2e-out",
    "ORIGINALS_BUCKET": ORIGINALS_BUCKET,
    "UPLOAD_BUCKET": "e2e-uploads",
}


@pytest.fixture(scope="module")
def cloud(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory, fake_bin: Path
) -> Iterator[tuple[Fake, AnonymousGcs]]:
    """The fake project set up and deployed by the scripts under the harness's names, its
    functions answering at the harness's ports and its API token the harness's."""
    assert deployment.project == NAMES["PROJECT"] and deployment.bucket == NAMES["BUCKET"]
    assert deployment.upload_bucket == NAMES["UPLOAD_BUCKET"]
    assert deployment.env["IMGPIPE_ORIGINALS_BUCKET"] == ORIGINALS_BUCKET
    fake = Fake.create(
        tmp_path_factory.mktemp("verify"),
        fake_bin,
        project=NAMES["PROJECT"],
        function_uris={
            f"imgpipe-{fn}": deployment.url(fn, "") for fn in ("upload", "status", "sweeper")
        },
    )
    fake.env.update(NAMES)
    for result in (fake.run("setup.sh"), fake.deploy()):
        assert result.rc == 0, result
    state = fake.state()
    state["secrets"]["imgpipe-api-token"]["versions"].append(TOKEN)
    fake.write_state(state)
    proxy = AnonymousGcs(deployment.env["STORAGE_EMULATOR_HOST"], fake)
    try:
        yield fake, proxy
    finally:
        proxy.close()


def verify(fake: Fake, proxy: AnonymousGcs, **env: str) -> Result:
    return fake.run("verify.sh", STORAGE_ENDPOINT=proxy.base, VERIFY_TIMEOUT="90", **env)


def uploaded_id(result: Result) -> str:
    marker = "uploaded as "
    line = next(line for line in result.stderr.splitlines() if marker in line)
    return line.split(marker, 1)[1].split()[0]


def test_verify_passes_on_a_working_deployment(
    cloud: tuple[Fake, AnonymousGcs], deployment: Deployment
) -> None:
    fake, proxy = cloud
    result = verify(fake, proxy)
    assert result.rc == 0, result
    assert "verify: all 12 checks passed" in result.stderr, result
    image_id = uploaded_id(result)
    assert len(image_id) == 32
    assert f"{image_id} is done after" in result.stderr
    # The original was stored, privately: the anonymous reads were refused, not missed.
    meta = gcpenv.http(
        "GET",
        f"{deployment.env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{ORIGINALS_BUCKET}/o/"
        f"originals%2F{image_id}",
    )
    assert meta[0] == 404, "the sample image is deleted at the end"
    refused = dict(proxy.seen)
    assert refused[f"/{ORIGINALS_BUCKET}/originals/{image_id}"] == 401
    assert refused["/storage/v1/b/e2e-out/o?maxResults=1"] == 401
    # ...and the sample was really processed and then deleted.
    status, _ = deployment.call("status", "GET", f"/images/{image_id}")
    assert status == 404
    # verify.sh found the functions and the token through gcloud, not through settings.
    looked_up = [c.line for c in result.calls]
    assert any("functions describe imgpipe-upload" in line for line in looked_up)
    assert any(
        "secrets versions access latest --secret=imgpipe-api-token" in line for line in looked_up
    )
    assert result.changes() == [], "verify.sh changes nothing in the project"


def test_verify_fails_when_an_original_is_publicly_readable(
    cloud: tuple[Fake, AnonymousGcs], deployment: Deployment
) -> None:
    fake, proxy = cloud
    proxy.leak.add(ORIGINALS_BUCKET)
    try:
        result = verify(fake, proxy)
    finally:
        proxy.leak.clear()
    assert result.rc == 1
    image_id = uploaded_id(result)
    assert f"the original of {image_id} is public" in result.stderr, result
    status, _ = deployment.call("status", "GET", f"/images/{image_id}")
    assert status == 404, "the sample is deleted even when a check fails"


def test_verify_fails_on_a_public_binding_before_uploading(
    cloud: tuple[Fake, AnonymousGcs],
) -> None:
    fake, proxy = cloud
    state = fake.state()
    policy = state["policies"][f"bucket:{ORIGINALS_BUCKET}"]
    policy["roles/storage.objectViewer"] = ["allUsers"]
    fake.write_state(state)
    try:
        result = verify(fake, proxy)
    finally:
        state = fake.state()
        del state["policies"][f"bucket:{ORIGINALS_BUCKET}"]["roles/storage.objectViewer"]
        fake.write_state(state)
    assert result.rc == 1
    assert f"gs://{ORIGINALS_BUCKET} (private) has public bindings" in result.stderr
    assert "==> Upload a sample" not in result.stderr


def test_verify_fails_when_the_outputs_bucket_can_be_listed(
    cloud: tuple[Fake, AnonymousGcs],
) -> None:
    fake, proxy = cloud
    state = fake.state()
    state["policies"]["bucket:e2e-out"]["roles/storage.objectViewer"] = ["allUsers"]
    fake.write_state(state)
    try:
        result = verify(fake, proxy)
    finally:
        state = fake.state()
        del state["policies"]["bucket:e2e-out"]["roles/storage.objectViewer"]
        fake.write_state(state)
    assert result.rc == 1
    assert "gs://e2e-out lets anyone list it" in result.stderr


def test_verify_names_what_is_missing(fake: Fake) -> None:
    result = fake.run("verify.sh")
    assert result.rc == 1
    assert (
        "is not enabled in demo-proj: run scripts/setup.sh and scripts/deploy.sh" in result.stderr
    )
    assert fake.run("setup.sh").rc == 0
    result = fake.run("verify.sh")
    assert result.rc == 1
    assert "imgpipe-upload is not deployed: run scripts/deploy.sh" in result.stderr
    assert result.changes() == []
