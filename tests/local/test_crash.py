"""Kill `imgpipe serve` with SIGKILL mid-batch, restart it, and check that every image ends
`done` exactly once: one set of outputs, the right counts."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from serveproc import Server

from corpus import manifest

PHOTOS = [
    "photo_nexus5x_hochuferweg.jpg",
    "Landscape_1.jpg",
    "Landscape_3.jpg",
    "Landscape_5.jpg",
    "Landscape_6.jpg",
    "Landscape_8.jpg",
    "baseline_mongolia.jpeg",
    "webp_lossy.webp",
    "gif_still_crash_test.gif",
    "png_rgba_blackbug.png",
]


def _set_short_deadlines(server: Server) -> None:
    # Cloud Tasks' minimum deadline (15 s), so leases of the killed process expire quickly.
    for queue in ("high", "normal"):
        server.cli(
            "queue",
            "update",
            queue,
            "--dispatch-deadline",
            "15",
            "--min-backoff",
            "1",
            "--max-backoff",
            "2",
        )


def test_kill_9_mid_batch_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = Server(data_dir)
    _set_short_deadlines(server)
    server.start()
    entries = {e.file: e for e in manifest()}
    ids = []
    for name in PHOTOS:
        reply = server.upload(name, entries[name].path.read_bytes())
        assert reply.status == 202, reply.body
        ids.append(reply.json()["image_id"])
    # Kill while work is in flight: at least one image done, not all.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = server.request("GET", "/status").json()["images"]
        if counts["done"] >= 1 or counts["processing"] >= 1:
            break
        time.sleep(0.02)
    server.stop(signal.SIGKILL)
    before = Server(data_dir, port=server.port)
    before.start()
    try:
        views = [before.wait_image(image_id, timeout=180) for image_id in ids]
        assert all(v["status"] == "done" for v in views), views
        counts = before.request("GET", "/status").json()["images"]
        assert counts["done"] == len(set(ids))
        assert counts["queued"] == counts["processing"] == counts["failed"] == 0
        for view in views:
            out = data_dir / "files" / "processed" / view["image_id"]
            files = sorted(p.name for p in out.iterdir())
            expected = sorted([r["file"] for r in view["renditions"]] + ["metadata.json"])
            assert files == expected  # no temp files, no second set
    finally:
        before.stop()
