"""Fixtures for the gcp tests: the Firestore and Pub/Sub emulators of the Google Cloud CLI,
fake-gcs-server, gcloud-tasks-emulator, and the Cloud Functions served by functions-framework
(one process per function), all on 127.0.0.1. Everything is started here and stopped by PID."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gcpenv
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from multipart import upload_body

TOKEN = "gcp-test-token"
SECRET = "gcp-test-task-secret"
LOCATION = "us-central1"
MAX_ATTEMPTS = 3  # the emulator's --max-retries is MAX_ATTEMPTS - 1 (it counts retries)
FUNCTIONS = ("upload", "ingest", "enqueue", "worker", "failure", "status", "sweeper")
TASKS_SA = "imgpipe-tasks@e2e.iam.gserviceaccount.com"
ORIGINALS_BUCKET = "e2e-originals"
EVENTS_TOPIC = "imgpipe-events"
EVENTS_SUBSCRIPTION = "events-test"


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gcp-logs")


@pytest.fixture(scope="session")
def session_env() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def firestore_host(log_dir: Path, session_env: pytest.MonkeyPatch) -> Iterator[str]:
    proc, host = gcpenv.start_firestore(log_dir)
    session_env.setenv("FIRESTORE_EMULATOR_HOST", host)
    try:
        yield host
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def pubsub_host(log_dir: Path, session_env: pytest.MonkeyPatch) -> Iterator[str]:
    proc, host = gcpenv.start_pubsub(log_dir)
    session_env.setenv("PUBSUB_EMULATOR_HOST", host)
    try:
        yield host
    finally:
        proc.stop()


@dataclass
class Gcs:
    base: str
    upload_bucket: str
    topic: str
    project: str

    def create_bucket(self, name: str) -> None:
        status, _, body = gcpenv.http(
            "POST", f"{self.base}/storage/v1/b?project={self.project}", json_body={"name": name}
        )
        assert status in (200, 409), body


@pytest.fixture(scope="session")
def gcs(log_dir: Path, pubsub_host: str, session_env: pytest.MonkeyPatch) -> Iterator[Gcs]:
    project, topic = "imgpipe-e2e", "gcs-events"
    status, _, body = gcpenv.http(
        "PUT", f"http://{pubsub_host}/v1/projects/{project}/topics/{topic}", json_body={}
    )
    assert status in (200, 409), body
    upload_bucket = "e2e-uploads"
    proc, base = gcpenv.start_fake_gcs(
        log_dir, pubsub_host=pubsub_host, project=project, topic=topic, event_bucket=upload_bucket
    )
    session_env.setenv("STORAGE_EMULATOR_HOST", base)
    store = Gcs(base, upload_bucket, topic, project)
    store.create_bucket(upload_bucket)
    try:
        yield store
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def tasks_host(log_dir: Path) -> Iterator[str]:
    proc, host = gcpenv.start_tasks_emulator(log_dir, max_retries=MAX_ATTEMPTS - 1)
    try:
        yield host
    finally:
        proc.stop()


# ---------------------------------------------------------------- keys and tokens


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @property
    def pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def jwk(self) -> dict[str, Any]:
        import jwt  # noqa: PLC0415

        jwk: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key())
        )
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, **claims: Any) -> str:
        import jwt  # noqa: PLC0415

        now = int(time.time())
        body = {
            "iss": "https://accounts.google.com",
            "aud": "http://audience.invalid/tasks",
            "email": TASKS_SA,
            "email_verified": True,
            "sub": "1234567890",
            "iat": now,
            "exp": now + 600,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": self.kid})


def new_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return new_key("test-key-1")


@pytest.fixture(scope="session")
def jwks(signing_key: SigningKey) -> Iterator[gcpenv.JwksServer]:
    server = gcpenv.JwksServer({"keys": [signing_key.jwk()]})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sa_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account key made up for the tests: V4 URLs are signed with it, locally."""
    key = new_key("sa-key")
    path = tmp_path_factory.mktemp("creds") / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "imgpipe-e2e",
                "private_key_id": key.kid,
                "private_key": key.pem,
                "client_email": "imgpipe-functions@imgpipe-e2e.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    return path


# ---------------------------------------------------------------- images


def make_jpeg(seed: int, size: tuple[int, int] = (480, 320)) -> bytes:
    """A small photo-like JPEG, different for every seed (so a different image id)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(24):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(20, 200), y0 + rng.randrange(20, 160)
        draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


# ---------------------------------------------------------------- the deployment


@dataclass
class Deployment:
    project: str
    bucket: str
    upload_bucket: str
    ports: dict[str, int]
    env: dict[str, str]
    log_dir: Path
    proxy: gcpenv.FlakyProxy
    relay: gcpenv.EventRelay | None = None
    procs: dict[str, gcpenv.Proc] = field(default_factory=dict)

    def url(self, function: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[function]}{path}"

    def call(
        self,
        function: str,
        method: str,
        path: str,
        *,
        key: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-Key"] = key
        status, _, body = gcpenv.http(method, self.url(function, path), headers=hdrs, **kwargs)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def upload(self, name: str, data: bytes, **fields: str) -> tuple[int, Any]:
        body, content_type = upload_body(name, data, **fields)
        return self.call(
            "upload",
            "POST",
            "/upload",
            body=body,
            headers={"Content-Type": content_type},
        )

    def image(self, image_id: str) -> dict[str, Any]:
        status, body = self.call("status", "GET", f"/images/{image_id}")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def wait_image(
        self, image_id: str, states: tuple[str, ...] = ("done", "failed"), timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, body = self.call("status", "GET", f"/images/{image_id}")
            if status == 200:
                view = body
                if view["status"] in states:
                    return view
            time.sleep(0.3)
        raise AssertionError(f"image {image_id} not in {states}: {view}\n{self.logs('worker')}")

    def logs(self, function: str) -> str:
        return self.procs[function].log() if function in self.procs else ""

    def log_entries(self, function: str) -> list[dict[str, Any]]:
        text = self.procs[function].log_path.read_text(errors="replace")
        entries = []
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        return entries

    def start_function(self, name: str, port: int, **env: str) -> gcpenv.Proc:
        proc = gcpenv.start_function(name, {**self.env, **env}, self.log_dir, port)
        self.procs[f"{name}@{port}"] = proc
        return proc


def create_queues(tasks_host: str, project: str, names: tuple[str, ...]) -> None:
    from google.cloud import tasks_v2  # noqa: PLC0415

    from imgpipe.gcp.taskqueue import emulator_clients  # noqa: PLC0415

    client, _ = emulator_clients(tasks_host)
    parent = f"projects/{project}/locations/{LOCATION}"
    for name in names:
        # The worker reads its last attempt from the queue's own RetryConfig, as on Google
        # Cloud where setup sets it; the emulator itself retries per its --max-retries.
        queue = tasks_v2.Queue(
            name=f"{parent}/queues/{name}",
            retry_config=tasks_v2.RetryConfig(max_attempts=MAX_ATTEMPTS),
        )
        client.create_queue(parent=parent, queue=queue)


@pytest.fixture(scope="session")
def deployment(  # noqa: PLR0917 (fixtures)
    firestore_host: str,
    gcs: Gcs,
    pubsub_host: str,
    tasks_host: str,
    log_dir: Path,
    sa_key_file: Path,
) -> Iterator[Deployment]:
    project = gcs.project
    bucket = "e2e-out"
    gcs.create_bucket(bucket)
    gcs.create_bucket(ORIGINALS_BUCKET)
    create_queues(tasks_host, project, ("high", "normal"))
    ports = {name: gcpenv.free_port() for name in FUNCTIONS}
    proxy = gcpenv.FlakyProxy(gcs.base)
    env = {
        "IMGPIPE_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": project,
        "IMGPIPE_LOCATION": LOCATION,
        "IMGPIPE_BUCKET": bucket,
        "IMGPIPE_UPLOAD_BUCKET": gcs.upload_bucket,
        "IMGPIPE_ORIGINALS_BUCKET": ORIGINALS_BUCKET,
        "IMGPIPE_EVENTS_TOPIC": EVENTS_TOPIC,
        "IMGPIPE_API_TOKEN": TOKEN,
        "IMGPIPE_TASK_AUTH": "secret",
        "IMGPIPE_TASK_SECRET": SECRET,
        "IMGPIPE_WORKER_URL": f"http://127.0.0.1:{ports['worker']}/tasks/process",
        "IMGPIPE_FAILURE_URL": f"http://127.0.0.1:{ports['failure']}/tasks/failed",
        "IMGPIPE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "IMGPIPE_RENDITIONS": "320,640",
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "STORAGE_EMULATOR_HOST": gcs.base,
        "CLOUD_TASKS_EMULATOR_HOST": tasks_host,
        "GOOGLE_APPLICATION_CREDENTIALS": str(sa_key_file),
        "PYTHONUNBUFFERED": "1",
    }
    dep = Deployment(project, bucket, gcs.upload_bucket, ports, env, log_dir, proxy)
    # The worker reaches storage through the flaky proxy (pass-through until armed).
    per_function = {"worker": {"STORAGE_EMULATOR_HOST": proxy.base}}

    def start(name: str) -> tuple[str, gcpenv.Proc]:
        return name, gcpenv.start_function(
            name, {**env, **per_function.get(name, {})}, log_dir, ports[name]
        )

    for path, body in (
        (f"topics/{EVENTS_TOPIC}", {}),
        (
            f"subscriptions/{EVENTS_SUBSCRIPTION}",
            {"topic": f"projects/{project}/topics/{EVENTS_TOPIC}"},
        ),
    ):
        status, _, answer = gcpenv.http(
            "PUT", f"http://{pubsub_host}/v1/projects/{project}/{path}", json_body=body
        )
        assert status in (200, 409), answer
    try:
        with ThreadPoolExecutor(len(FUNCTIONS)) as pool:
            for name, proc in pool.map(start, FUNCTIONS):
                dep.procs[name] = proc
        subscription = f"projects/{project}/subscriptions/relay"
        status, _, body = gcpenv.http(
            "PUT",
            f"http://{pubsub_host}/v1/{subscription}",
            json_body={"topic": f"projects/{project}/topics/{gcs.topic}"},
        )
        assert status in (200, 409), body
        dep.relay = gcpenv.EventRelay(pubsub_host, subscription, dep.url("ingest", "/"))
        yield dep
    finally:
        if dep.relay is not None:
            dep.relay.close()
        for proc in dep.procs.values():
            proc.stop()
        proxy.close()


@pytest.fixture(scope="session")
def in_process(deployment: Deployment, session_env: pytest.MonkeyPatch) -> Any:
    """The deployment's Services built in the test process (same emulators, same config)."""
    from imgpipe.gcp.wiring import gcp_runtime  # noqa: PLC0415
    from imgpipe.settings import Settings  # noqa: PLC0415

    env = {**deployment.env, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]}
    return gcp_runtime(Settings.from_env(env))
