"""`imgpipe process` and the admin commands, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from corpus import corpus_dir, manifest

ROOT = Path(__file__).resolve().parents[2]


def imgpipe(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgpipe.cli", *args],
        env={**os.environ, "IMGPIPE_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_process_examples_twice_does_no_work_again(tmp_path: Path) -> None:
    out, data = tmp_path / "out", tmp_path / "data"
    first = imgpipe(
        "process",
        str(ROOT / "examples"),
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r1.json"),
        data_dir=data,
    )
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "r1.json").read_text())
    images = [p for p in (ROOT / "examples").iterdir() if p.suffix != ".md"]
    assert report["summary"]["done"] == len(images)
    for result in report["results"]:
        assert result["status"] == "done" and result["error"] is None
        meta = json.loads((out / result["image_id"] / "metadata.json").read_text())
        assert meta["image_id"] == result["image_id"]
        assert meta["source"]["path"] == str(Path(result["path"]).resolve())
        assert len(meta["palette"]["colors"]) <= 8
        for rendition in meta["renditions"]:
            with Image.open(out / result["image_id"] / rendition["file"]) as img:
                assert img.size == (rendition["width"], rendition["height"])
                assert rendition["width"] <= meta["source"]["width"]
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    second = imgpipe(
        "process",
        str(ROOT / "examples"),
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r2.json"),
        data_dir=data,
    )
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "r2.json").read_text())
    assert again["summary"]["skipped"] == len(images)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_process_reports_bad_inputs_and_exits_1(tmp_path: Path) -> None:
    rejects = [e for e in manifest() if e.expect == "reject"]
    good = corpus_dir() / "png_palette_basn3p08.png"
    paths = [str(e.path) for e in rejects] + [str(good), str(tmp_path / "missing.jpg")]
    result = imgpipe(
        "process",
        *paths,
        "--out",
        str(tmp_path / "out"),
        "--report",
        str(tmp_path / "r.json"),
        data_dir=tmp_path / "data",
    )
    assert result.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    by_path = {r["path"]: r for r in report["results"]}
    for entry in rejects:
        got = by_path[str(entry.path)]
        assert got["status"] == "failed"
        assert got["error"]["code"] in entry.codes, (entry.file, got)
        assert got["error"]["code"] in result.stderr
    assert by_path[str(good)]["status"] == "done"
    assert by_path[str(tmp_path / "missing.jpg")]["error"]["code"] == "not_found"


def test_bad_setting_fails_at_start_naming_it(tmp_path: Path) -> None:
    result = imgpipe("status", data_dir=tmp_path, IMGPIPE_MAX_PIXELS="many")
    assert result.returncode == 2
    assert "IMGPIPE_MAX_PIXELS" in result.stderr


def test_queue_admin_commands(tmp_path: Path) -> None:
    listed = imgpipe("queue", "list", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {q["name"] for q in json.loads(listed.stdout)} == {"high", "normal"}
    updated = imgpipe(
        "queue", "update", "normal", "--max-dispatches-per-second", "5", data_dir=tmp_path
    )
    assert updated.returncode == 0, updated.stderr
    described = json.loads(imgpipe("queue", "describe", "normal", data_dir=tmp_path).stdout)
    assert described["max_dispatches_per_second"] == 5
    assert (described["rate_factor"], described["held_until"]) == (1.0, None)
    assert imgpipe("queue", "pause", "normal", data_dir=tmp_path).returncode == 0
    described = json.loads(imgpipe("queue", "describe", "normal", data_dir=tmp_path).stdout)
    assert described["state"] == "PAUSED"
    bad = imgpipe("queue", "describe", "nope", data_dir=tmp_path)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_process_heic_and_avif_into_jpeg_webp_and_avif(tmp_path: Path) -> None:
    """Phone formats in, AVIF out (issue 13), through the CLI as users run it."""
    out = tmp_path / "out"
    photos = [corpus_dir() / "heic_iphone12pro_car.heic", corpus_dir() / "avif_gradient.avif"]
    result = imgpipe(
        "process",
        *map(str, photos),
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r.json"),
        data_dir=tmp_path / "data",
        IMGPIPE_FORMATS="jpeg,webp,avif",
        IMGPIPE_RENDITIONS="320,640,200x200:cover",
    )
    assert result.returncode == 0, result.stderr
    assert "Svt[" not in result.stderr + result.stdout  # the encoder's chatter is silenced
    report = json.loads((tmp_path / "r.json").read_text())
    by_name = {Path(r["path"]).name: r for r in report["results"]}
    assert {r["status"] for r in by_name.values()} == {"done"}
    heic = json.loads((out / by_name[photos[0].name]["image_id"] / "metadata.json").read_text())
    # Portrait: the iPhone's irot is applied once (the EXIF orientation is not applied on top).
    assert (heic["source"]["width"], heic["source"]["height"]) == (3024, 4032)
    for meta, image_id in ((heic, by_name[photos[0].name]["image_id"]),):
        formats: dict[str, set[str]] = {}
        for rendition in meta["renditions"]:
            formats.setdefault(rendition["name"], set()).add(rendition["format"])
            with Image.open(out / image_id / rendition["file"]) as img:
                assert (
                    img.format
                    == {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[rendition["format"]]
                )
                assert img.size == (rendition["width"], rendition["height"])
        assert formats == {n: {"jpeg", "webp", "avif"} for n in ("w320", "w640", "200x200-cover")}
        assert "w320" in meta["srcset"]["avif"] and "320w" in meta["srcset"]["avif"]
    w320 = next(r for r in heic["renditions"] if r["name"] == "w320")
    assert (w320["width"], w320["height"]) == (320, 427)
