"""The side-by-side benchmark runs end to end: all three libraries on the same photo, the
per-stage table, the whole-job table and every target line. (It measures nothing here; the
numbers come from running it on the full photo set.)"""

from __future__ import annotations

import re
import subprocess
import sys

from corpus import ROOT, corpus_dir


def test_bench_runs_every_library_and_prints_the_targets() -> None:
    photo = corpus_dir() / "Landscape_6.jpg"  # EXIF orientation 6: every stage does work
    args = ["--images", str(photo), "--threads", "1", "2", "--repeat", "1"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    stage_rows = re.findall(r"^(imgcore|pillow|pyvips)\s+\d+\.\d{3}\s", out, re.M)
    assert sorted(stage_rows) == ["imgcore", "pillow", "pyvips"]
    wall_rows = re.findall(r"^(imgcore|pillow|pyvips)\s+([12])\s+\d+\.\d{3}", out, re.M)
    assert len(wall_rows) == 6
    targets = out.split("\nTargets\n", 1)[1].splitlines()
    for needle in (
        "imgcore 2 threads vs pillow single-threaded",
        "imgcore 2 threads vs pyvips single-threaded",
        "both on 2 threads, vs pillow",
        "both on 2 threads, vs pyvips",
        "stages other than the encoders",
        "WebP stage vs pyvips",
        "decode vs plain decode",
        "palette:",
    ):
        line = next((t for t in targets if needle in t), None)
        assert line is not None, f"no target line with {needle!r} in:\n{out}"
        assert re.search(r"(met|NOT met)$", line), line
    assert re.search(r"^imgpipe\s+\d+\.\d{2}\s+\d+\s+0\.\d{5}$", out, re.M), out
    assert "AVIF stage: Pillow takes" in out
    assert re.search(r"CLI vs core, 2 cores, .* the CLI takes \d\.\d\dx", out), out
