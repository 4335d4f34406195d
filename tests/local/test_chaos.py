"""Chaos: a real `imgpipe serve` with 200 distinct images, killed with SIGKILL at random
moments five times and restarted. Every image ends `done` exactly once with one set of
outputs, nothing is left `queued` without a task, the job's counts match, and each kill is
recovered within min_backoff + 5 s of the restart (the dead process's leases are released at
once, not after the 600 s dispatch deadline)."""

from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import time
from pathlib import Path

from PIL import Image
from serveproc import Server

COUNT = 200
KILLS = 5
MIN_BACKOFF = 1.0


def _images(folder: Path) -> None:
    folder.mkdir(parents=True)
    for n in range(COUNT):
        image = Image.effect_noise((900, 600), 40 + n % 50).convert("RGB")
        image.paste((n * 37 % 256, n * 91 % 256, n * 13 % 256), (0, 0, 120, 80))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        (folder / f"{n:03d} photo é.jpg").write_bytes(buffer.getvalue())


def _states(data_dir: Path) -> dict[str, tuple[str, float | None]]:
    with sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT image_id, state, started_at FROM images").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _set_queues(server: Server) -> None:
    for queue in ("high", "normal"):
        server.cli(
            "queue",
            "update",
            queue,
            "--min-backoff",
            str(MIN_BACKOFF),
            "--max-backoff",
            "2",
            "--max-attempts",
            "20",
        )


def test_five_kills_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    data_dir = tmp_path / "data"
    _images(data_dir / "uploads" / "chaos")
    server = Server(data_dir)
    data_dir.mkdir(exist_ok=True)
    _set_queues(server)
    server.start()
    reply = server.request("POST", "/enqueue", json_body={"prefix": "chaos/"})
    assert reply.status == 202, reply.body
    job_id = reply.json()["job_id"]
    recoveries: list[float] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.0))
        server.stop(signal.SIGKILL)
        killed_at = time.time()
        interrupted = {i for i, (state, _) in _states(data_dir).items() if state == "processing"}
        server.start()
        restarted = time.monotonic()
        pending = set(interrupted)
        while pending and time.monotonic() - restarted < MIN_BACKOFF + 10:
            states = _states(data_dir)
            pending = {
                i
                for i in pending
                if (states[i][0] == "processing" and (states[i][1] or 0) < killed_at)
                or states[i][0] == "queued"
            }
            time.sleep(0.05)
        recoveries.append(time.monotonic() - restarted)
        assert not pending, f"not running again after a kill: {pending}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = server.request("GET", f"/jobs/{job_id}").json()
        if job["status"] == "done":
            break
        time.sleep(0.2)
    try:
        assert job["status"] == "done", job
        assert (job["total_tasks"], job["failed_tasks"]) == (COUNT, 0), job
        assert job["completed_tasks"] + job["skipped_tasks"] == COUNT, job
        states = _states(data_dir)
        assert len(states) == COUNT and {s for s, _ in states.values()} == {"done"}
        status = server.request("GET", "/status").json()
        assert status["images"]["done"] == COUNT and status["recent_failures"] == []
        assert all(q["depth"] == 0 for q in status["queues"]), status["queues"]
        for image_id in states:
            folder = data_dir / "files" / "processed" / image_id
            meta = json.loads((folder / "metadata.json").read_text())
            expected = sorted([*(r["file"] for r in meta["renditions"]), "metadata.json"])
            assert sorted(p.name for p in folder.iterdir()) == expected, image_id
    finally:
        server.stop()
    print(f"recovery after each kill (s): {[round(r, 2) for r in recoveries]}")
    assert max(recoveries) <= MIN_BACKOFF + 5
