"""Runs scripts/setup.sh, deploy.sh and verify.sh against the fake gcloud (fakegcloud.py, first
on PATH), and reads back what they did."""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakegcloud

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROJECT = fakegcloud.PROJECT
WHEEL_TAG = "cp311-abi3-manylinux_2_28_x86_64"
NO_ACCOUNT = "You do not currently have an active account selected"
# The scripts' own settings: none may leak in from the shell that runs the tests.
SCRIPT_SETTINGS = {
    "PROJECT",
    "REGION",
    "BUCKET",
    "ORIGINALS_BUCKET",
    "UPLOAD_BUCKET",
    "QUEUE",
    "QUEUE_HIGH",
    "PUBLIC_RENDITIONS",
    "PUBLIC_API",
    "BACKLOG_DEPTH",
    "BACKLOG_DELAY",
    "MOVE_ORIGINALS",
    "VERIFY_SAMPLE",
    "VERIFY_TIMEOUT",
    "STORAGE_ENDPOINT",
    "WORKER_MAX_INSTANCES",
    "PYTHONPATH",
}

# Verbs that only read: everything else a script runs changes something.
READ_ONLY = {
    ("auth", "list"),
    ("config", "get-value"),
    ("projects", "describe"),
    ("projects", "get-iam-policy"),
    ("billing", "projects", "describe"),
    ("services", "list"),
    ("iam", "service-accounts", "describe"),
    ("iam", "service-accounts", "get-iam-policy"),
    ("storage", "service-agent"),
    ("storage", "ls"),
    ("storage", "objects", "list"),
    ("storage", "buckets", "describe"),
    ("storage", "buckets", "get-iam-policy"),
    ("secrets", "describe"),
    ("secrets", "get-iam-policy"),
    ("secrets", "versions", "access"),
    ("pubsub", "topics", "describe"),
    ("pubsub", "topics", "get-iam-policy"),
    ("tasks", "queues", "describe"),
    ("tasks", "queues", "get-iam-policy"),
    ("firestore", "databases", "describe"),
    ("firestore", "indexes", "composite", "list"),
    ("firestore", "indexes", "fields", "describe"),
    ("logging", "metrics", "describe"),
    ("monitoring", "channels", "list"),
    ("monitoring", "policies", "list"),
    ("functions", "describe"),
    ("run", "services", "describe"),
    ("run", "services", "get-iam-policy"),
    ("scheduler", "jobs", "describe"),
}


@dataclass
class Call:
    seq: int
    argv: list[str]
    rc: int
    start: float
    end: float
    files: dict[str, str]
    injected: bool

    @property
    def words(self) -> list[str]:
        return [a for a in self.argv if not a.startswith("--") and a not in ("alpha", "beta")]

    @property
    def line(self) -> str:
        return " ".join(self.argv)

    @property
    def read_only(self) -> bool:
        words = self.words
        return any(tuple(words[: len(v)]) == v for v in READ_ONLY)

    def flag(self, name: str) -> str | None:
        for arg in reversed(self.argv):
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None

    def has(self, *words: str) -> bool:
        return tuple(self.words[: len(words)]) == words


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    calls: list[Call]

    def changes(self) -> list[Call]:
        return [c for c in self.calls if not c.read_only]

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stderr ---\n{self.stderr[-6000:]}"


@dataclass
class Fake:
    """One fake project: its state directory, and the scripts run against it."""

    directory: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, bin_dir: Path, **state: Any) -> Fake:
        directory.mkdir(parents=True, exist_ok=True)
        fake = cls(directory, bin_dir)
        fake.write_state(fakegcloud.initial_state(**state))
        return fake

    # -- state and faults
    def state(self) -> dict[str, Any]:
        return json.loads((self.directory / "state.json").read_text())

    def write_state(self, state: dict[str, Any]) -> None:
        (self.directory / "state.json").write_text(json.dumps(state, indent=1))

    def update_state(self, **changes: Any) -> None:
        state = self.state()
        state.update(changes)
        self.write_state(state)

    def fail(
        self, match: str, *, times: int | None = 1, message: str | None = None, apply: bool = False
    ) -> None:
        """Fail the next `times` calls (None: all) whose command line contains `match`; with
        `apply` they take effect all the same (the answer is lost, not the change)."""
        faults = self.faults()
        entry: dict[str, Any] = {"match": match, "times": times, "apply": apply}
        entry["message"] = message or fakegcloud.Fault(match).message
        faults.append(entry)
        (self.directory / "faults.json").write_text(json.dumps(faults))

    def faults(self) -> list[dict[str, Any]]:
        path = self.directory / "faults.json"
        return json.loads(path.read_text()) if path.exists() else []

    def clear_faults(self) -> None:
        (self.directory / "faults.json").unlink(missing_ok=True)

    def calls(self) -> list[Call]:
        path = self.directory / "calls.jsonl"
        if not path.exists():
            return []
        return [Call(**json.loads(line)) for line in path.read_text().splitlines() if line]

    # -- scripts
    def script_env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CLOUDSDK_", "GOOGLE_", "IMGPIPE_", "FAKE_GCLOUD", "ALERT"))
            and k not in SCRIPT_SETTINGS
        }
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            FAKE_GCLOUD_DIR=str(self.directory),
            PROJECT=PROJECT,
            REGION="us-central1",
            PYTHON=sys.executable,
            IMGPIPE_RETRY_DELAY="0",
            IMGPIPE_RETRIES="4",
            TMPDIR=str(self.tmp_dir),
        )
        env.update(self.env)
        env.update(extra)
        return env

    @property
    def tmp_dir(self) -> Path:
        path = self.directory / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def run(self, script: str, *args: str, timeout: float = 120, **env: str) -> Result:
        before = len(self.calls())
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / script), *args],
            env=self.script_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp_dir,
        )
        return Result(done.returncode, done.stdout, done.stderr, self.calls()[before:])

    def wheel(self) -> Path:
        """A stand-in wheel file for deploy.sh (the fake deploys never install it)."""
        path = self.directory / f"imgpipe-0.1.0-{WHEEL_TAG}.whl"
        path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        return path

    def deploy(self, *args: str, **env: str) -> Result:
        return self.run("deploy.sh", *args, str(self.wheel()), **env)


class FakeServer:
    """Serves fakegcloud.handle on 127.0.0.1 to the bash `gcloud` launcher. The request is
    NUL-separated (state dir, argc, argv...); the answer is "RC OUT_BYTES ERR_BYTES\\n" and the
    two texts, which the launcher reads with bash's own `read -N`: a call costs no process but
    the launcher's bash."""

    def __init__(self) -> None:
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server.serve(self.rfile, self.wfile)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.port = int(self.tcp.server_address[1])
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, rfile: Any, wfile: Any) -> None:
        fields: list[str] = []
        buffer = b""
        need = 2
        while len(fields) < need:
            chunk = rfile.read1(65536)
            if not chunk:
                return
            buffer += chunk
            *done, buffer = buffer.split(b"\0")
            fields += [f.decode() for f in done]
            if len(fields) >= 2:
                need = 2 + int(fields[1])
        directory, argv = fields[0], fields[2:need]
        try:
            rc, out, err = fakegcloud.handle(directory, argv)
        except Exception as exc:  # a bug in the fake: make it visible in the script's output
            rc, out, err = 97, "", f"fake gcloud crashed: {exc!r}\n"
        data_out, data_err = out.encode(), err.encode()
        wfile.write(f"{rc} {len(data_out)} {len(data_err)}\n".encode() + data_out + data_err)
        wfile.flush()

    def close(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()


LAUNCHER = """#!/usr/bin/env bash
# The fake gcloud (tests/scripts/fakegcloud.py, served by the test process).
export LC_ALL=C  # read -N counts bytes
exec 3<>/dev/tcp/127.0.0.1/{port} || exit 98
printf '%s\\0' "${{FAKE_GCLOUD_DIR:?}}" "$#" "$@" >&3
read -r rc n_out n_err <&3 || exit 98
out="" err=""
[ "$n_out" -eq 0 ] || IFS= read -r -N "$n_out" out <&3
[ "$n_err" -eq 0 ] || IFS= read -r -N "$n_err" err <&3
printf '%s' "$out"
printf '%s' "$err" >&2
exit "$rc"
"""


def write_launcher(bin_dir: Path, server: FakeServer) -> Path:
    """`gcloud` on PATH: a few lines of bash that hand the call to the test process."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "gcloud"
    launcher.write_text(LAUNCHER.format(port=server.port))
    launcher.chmod(0o755)
    return launcher


# ---------------------------------------------------------------- the real gcloud


def gcloud_real() -> str:
    found = shutil.which("gcloud", path=os.environ.get("PATH", "").replace(":", os.pathsep))
    assert found, "the Google Cloud CLI is not installed (gcloud info)"
    return found


def replay(argv: list[str]) -> tuple[list[str], int, str]:
    """`gcloud ARGV` (the real one) with an empty configuration directory: no account, no
    project, no credentials, no metadata server, no update check."""
    real = gcloud_real()
    with tempfile.TemporaryDirectory(prefix="gcloud-config-") as config:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_"))}
        env.update(
            CLOUDSDK_CONFIG=config,
            CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="1",
            CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        )
        done = subprocess.run(
            [real, *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return argv, done.returncode, done.stderr


@dataclass
class Journey:
    """setup -> deploy -> setup -> deploy on one empty project."""

    fake: Fake
    setup1: Result
    deploy1: Result
    setup2: Result
    deploy2: Result

    def all(self) -> list[Result]:
        return [self.setup1, self.deploy1, self.setup2, self.deploy2]


def journey_on(fake: Fake, *args: str, **env: str) -> Journey:
    results = []
    for script in ("setup.sh", "deploy.sh", "setup.sh", "deploy.sh"):
        if script == "setup.sh":
            result = fake.run(script, *args, **env)
        else:
            result = fake.deploy(*args, **env)
        assert result.rc == 0, f"{script} {' '.join(args)}: {result}"
        results.append(result)
    return Journey(fake, *results)
