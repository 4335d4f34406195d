"""`imgpipe process`: the embedded main job. Every file goes through the same queue and worker
code as the service, in one process, using all cores (the core releases the GIL)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe import pipeline
from imgpipe.errors import InvalidRequest, NotFound, PipelineError, from_code
from imgpipe.http.localqueue import in_process_handlers
from imgpipe.imaging import check_size
from imgpipe.model import State
from imgpipe.progress import ProgressBar
from imgpipe.settings import Settings
from imgpipe.wiring import local_runtime

POLL = 0.05


@dataclass(slots=True)
class FileResult:
    path: str
    image_id: str | None = None
    status: str = "pending"
    error: PipelineError | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "image_id": self.image_id,
            "status": self.status,
            "error": None
            if self.error is None
            else {"code": self.error.code, "message": self.error.message},
        }


def collect(paths: Iterable[str]) -> tuple[list[Path], list[FileResult]]:
    """Files under the given paths (directories recursively, hidden entries skipped); the
    format is sniffed from the bytes later, never from the name."""
    found: list[Path] = []
    bad: list[FileResult] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.parts[-1:])
            )
        elif path.is_file():
            found.append(path)
        else:
            bad.append(FileResult(raw, status="failed", error=NotFound(f"no such file: {raw}")))
    return list(dict.fromkeys(found)), bad


def run_batch(
    settings: Settings,
    paths: Iterable[str],
    out: str,
    *,
    report: str | None = None,
    workers: int | None = None,
) -> int:
    files, results = collect(paths)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = local_runtime(settings, out_dir=out_dir, queue_file="process-queue.db")
    svc = runtime.services
    if workers is not None:
        if workers < 1:
            raise InvalidRequest("--workers must be at least 1")
        for name in (settings.queue, settings.queue_high):
            runtime.queue.update_queue(name, max_concurrent_dispatches=workers)
    job_id = pipeline.new_job(svc, "process")
    started = time.monotonic()
    for path in files:
        results.append(_submit(svc, path, job_id))
    pending = [r for r in results if r.status == "pending"]
    expected = len({r.image_id for r in pending})

    dispatcher = in_process_handlers(runtime)
    dispatcher.start()
    bar = ProgressBar(expected, label="imgpipe ")
    try:
        while True:
            job = svc.state.get_job(job_id)
            done = job.finished if job else 0
            bar.update(done, failed=job.counts.get("failed", 0) if job else 0)
            if done >= expected:
                break
            time.sleep(POLL)
    finally:
        dispatcher.stop()
    bar.close(expected)
    for result in pending:
        _settle(svc, result)
    summary = _summary(results, time.monotonic() - started)
    _print_summary(results, summary, out_dir)
    if report:
        payload = {"results": [r.to_json() for r in results], "summary": summary}
        Path(report).write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if summary["failed"] else 0


def _submit(svc: pipeline.Services, path: Path, job_id: str) -> FileResult:
    result = FileResult(str(path))
    try:
        check_size(path.stat().st_size, svc.limits)
        data = path.read_bytes()
        record, queued = pipeline.submit(
            svc,
            data,
            {"path": str(path.resolve())},
            priority="normal",
            job_id=job_id,
            rerun=True,
        )
    except PipelineError as exc:
        result.status, result.error = "failed", exc
        return result
    except OSError as exc:
        result.status = "failed"
        result.error = InvalidRequest(f"cannot read {path}: {exc.strerror}")
        return result
    result.image_id = record.image_id
    result.skipped = not queued
    return result


def _settle(svc: pipeline.Services, result: FileResult) -> None:
    assert result.image_id is not None
    record = svc.state.get_image(result.image_id)
    if record is None:
        result.status = "failed"
        result.error = NotFound("image vanished during the run")
    elif record.state is State.DONE:
        result.status = "skipped" if result.skipped else "done"
    else:
        result.status = "failed"
        result.error = from_code(record.error_code or "internal", record.error_message or "")


def _summary(results: list[FileResult], seconds: float) -> dict[str, Any]:
    counts = {s: sum(1 for r in results if r.status == s) for s in ("done", "skipped", "failed")}
    return {"total": len(results), **counts, "seconds": round(seconds, 3)}


def _print_summary(results: list[FileResult], summary: Mapping[str, Any], out: Path) -> None:
    lines = [f"{'done':<8}{summary['done']:>6}", f"{'skipped':<8}{summary['skipped']:>6}"]
    lines.append(f"{'failed':<8}{summary['failed']:>6}")
    lines.append(f"{summary['total']} files in {summary['seconds']:.1f}s -> {out}{os.sep}")
    for r in results:
        if r.status == "failed" and r.error is not None:
            lines.append(f"  failed {r.path}: {r.error.code}: {r.error.message}")
    print("\n".join(lines), file=sys.stderr)
