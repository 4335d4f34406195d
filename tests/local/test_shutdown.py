"""SIGTERM: `imgpipe serve` stops taking tasks, lets those in flight finish for up to
IMGPIPE_SHUTDOWN_GRACE seconds, releases the rest as failed attempts and exits 0; a restart
runs them again at once. And `imgpipe reconcile` rebuilds a lost state database from the
outputs' metadata.json."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from serveproc import Server

from corpus import manifest

PHOTOS = ["photo_nexus5x_hochuferweg.jpg", "Landscape_1.jpg", "Landscape_5.jpg", "Landscape_6.jpg"]


def _upload_all(server: Server) -> list[str]:
    entries = {e.file: e for e in manifest()}
    ids = []
    for name in PHOTOS:
        reply = server.upload(name, entries[name].path.read_bytes())
        assert reply.status == 202, reply.body
        ids.append(reply.json()["image_id"])
    return ids


def test_sigterm_drains_within_the_grace_and_exits_zero(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env_extra={"IMGPIPE_SHUTDOWN_GRACE": "0.2"})
    server.data_dir.mkdir()
    server.start()
    ids = _upload_all(server)
    deadline = time.monotonic() + 60
    while server.request("GET", "/status").json()["images"]["processing"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc = server.proc
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 0.2 + 5
    assert "finishing tasks in flight" in server.log()
    server.proc = None
    restarted = Server(server.data_dir, port=server.port)
    restarted.start()
    try:
        views = [restarted.wait_image(image_id, timeout=120) for image_id in ids]
        assert {v["status"] for v in views} == {"done"}
    finally:
        restarted.stop()


def test_reconcile_rebuilds_a_lost_state_database(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.data_dir.mkdir()
    server.start()
    ids = _upload_all(server)
    try:
        before = {i: server.wait_image(i) for i in ids}
    finally:
        server.stop()
    for suffix in ("", "-wal", "-shm"):
        (server.data_dir / f"state.db{suffix}").unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", "reconcile"],
        env=server.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"restored": 4' in run.stdout, run.stdout
    server.start()
    try:
        for image_id, view in before.items():
            after = server.request("GET", f"/images/{image_id}").json()
            assert after["status"] == "done"
            assert after["renditions"] == view["renditions"]
            assert after["palette"] == view["palette"]
        # Known again: the same bytes are not rendered twice.
        entries = {e.file: e for e in manifest()}
        reply = server.upload(PHOTOS[0], entries[PHOTOS[0]].path.read_bytes())
        assert reply.status == 200 and reply.json()["status"] == "done"
    finally:
        server.stop()
