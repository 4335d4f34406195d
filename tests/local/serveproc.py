"""A real `imgpipe serve` process on a free loopback port, and a tiny HTTP client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multipart import upload_body

TOKEN = "test-token"
SECRET = "test-task-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "IMGPIPE_DATA_DIR": str(self.data_dir),
            "IMGPIPE_API_TOKEN": TOKEN,
            "IMGPIPE_TASK_SECRET": SECRET,
            **self.env_extra,
        }

    def start(self) -> None:
        env = self.env()
        log = (self.data_dir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgpipe.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log()}")
            try:
                if self.request("GET", "/status").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not start: {self.log()}")

    def cli(self, *args: str) -> str:
        """An `imgpipe` command on the same data dir (as an operator would run it)."""
        run = subprocess.run(
            [sys.executable, "-m", "imgpipe.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return run.stdout

    def log(self) -> str:
        return (self.data_dir / "serve.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        key: str | None = TOKEN,
    ) -> Reply:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs.setdefault("X-API-Key", key)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def upload(self, name: str, data: bytes, **fields: str) -> Reply:
        body, content_type = upload_body(name, data, **fields)
        return self.request(
            "POST",
            "/upload",
            body=body,
            headers={"Content-Type": content_type},
        )

    def wait_image(self, image_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view: dict[str, Any] = self.request("GET", f"/images/{image_id}").json()
            if view["status"] in ("done", "failed"):
                return view
            time.sleep(0.1)
        raise AssertionError(f"image {image_id} did not finish: {view}")
