"""Refusals: reject files, bombs, pixel limits, and fuzzed input robustness. (The corpus's
"stretch" files, HEIF and AVIF, are decoded now and tested as "ok" files.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _reference import (
    DEFAULT_RENDITIONS,
    Entry,
    corpus_dir,
    entries,
    entry,
)

from imgpipe import _imgcore

CLASS_FOR_CODE: dict[str, type[_imgcore.ImageError]] = {
    "unsupported_format": _imgcore.UnsupportedFormat,
    "corrupt_image": _imgcore.CorruptImage,
    "image_too_large": _imgcore.ImageTooLarge,
}
# A header-only probe cannot see that these are cut short: their headers are intact.
PROBE_MAY_PASS = {"truncated.jpg", "truncated.png"}


def check_error(err: BaseException, codes: tuple[str, ...]) -> None:
    assert isinstance(err, _imgcore.ImageError)
    assert isinstance(err, ValueError)
    assert err.code in codes, f"code {err.code!r}, expected one of {codes}: {err}"
    assert type(err) is CLASS_FOR_CODE[err.code], f"{type(err).__name__} for {err.code}"
    assert str(err), "error message is empty"


def test_exception_hierarchy() -> None:
    assert issubclass(_imgcore.ImageError, ValueError)
    for cls in CLASS_FOR_CODE.values():
        assert issubclass(cls, _imgcore.ImageError)


@pytest.mark.parametrize("e", entries("reject"), ids=lambda e: e.file)
def test_reject_process(e: Entry) -> None:
    with pytest.raises(_imgcore.ImageError) as exc:
        _imgcore.process(e.data(), DEFAULT_RENDITIONS)
    check_error(exc.value, e.codes)


@pytest.mark.parametrize("e", entries("reject"), ids=lambda e: e.file)
def test_reject_render_raw(e: Entry) -> None:
    with pytest.raises(_imgcore.ImageError) as exc:
        _imgcore.render_raw(e.data(), [(320, None, False)])
    check_error(exc.value, e.codes)


@pytest.mark.parametrize("e", entries("reject"), ids=lambda e: e.file)
def test_reject_probe(e: Entry) -> None:
    if e.file in PROBE_MAY_PASS:
        try:
            info = _imgcore.probe(e.data())
        except _imgcore.ImageError as err:
            check_error(err, e.codes)
        else:
            assert (info.width, info.height) == (e.width, e.height)
        return
    with pytest.raises(_imgcore.ImageError) as exc:
        _imgcore.probe(e.data())
    check_error(exc.value, e.codes)


@pytest.mark.parametrize("name", ["bomb_65536x65536.png", "bomb_65535x66601.gif"])
def test_bombs_refused_by_probe_and_process(name: str) -> None:
    data = entry(name).data()
    for call in (
        lambda: _imgcore.probe(data),
        lambda: _imgcore.process(data, DEFAULT_RENDITIONS),
        # even with a limit raised far above, allocation limits must not let 4 Gpx through
        lambda: _imgcore.probe(data, max_pixels=1_000_000_000),
    ):
        with pytest.raises(_imgcore.ImageTooLarge) as exc:
            call()
        assert exc.value.code == "image_too_large"


def test_process_huge_respects_max_pixels() -> None:
    data = entry("huge_9643x10328.jpg").data()
    with pytest.raises(_imgcore.ImageTooLarge) as exc:
        _imgcore.process(data, DEFAULT_RENDITIONS, max_pixels=99_000_000)
    assert exc.value.code == "image_too_large"


# --------------------------------------------------------------------------- fuzz-ish robustness

FUZZ_FILES = [
    "progressive_tablets.jpg",
    "baseline_mongolia.jpeg",
    "png_interlaced_basi2c08.png",
    "png_grayalpha8.png",
    "gif_still_crash_test.gif",
    "webp_lossy.webp",
    "webp_alpha.webp",
    "webp_lossless.webp",
    "tiff_uncompressed.tiff",
]
STRICT_FRACTIONS = (0.25, 0.5, 0.75)

FUZZ_SCRIPT = textwrap.dedent(
    """
    import json, random, sys
    from pathlib import Path
    from imgpipe import _imgcore

    corpus = Path(sys.argv[1])
    names = sys.argv[2:]
    rng = random.Random(20240611)

    def run(fn):
        try:
            fn()
            return "ok"
        except _imgcore.ImageError as err:
            return f"error:{err.code}:{type(err).__name__}"
        except BaseException as err:  # noqa: BLE001 - reported, not swallowed
            return f"other:{type(err).__name__}:{err}"

    for name in names:
        data = (corpus / name).read_bytes()
        n = len(data)
        cases = []
        for frac in (0.25, 0.5, 0.75):
            cases.append((f"trunc{frac}", data[: int(n * frac)]))
        for cut in (1, 2, 8, 16, 40, 100, n - 64, n - 2, n - 1):
            if 0 < cut < n:
                cases.append((f"cut{cut}", data[:cut]))
        for i in range(16):
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(n)
                buf[pos] = rng.randrange(256)
            cases.append((f"flip{i}", bytes(buf)))
        for label, blob in cases:
            case = f"{name}:{label}"
            print(json.dumps({"start": case}), flush=True)
            probe = run(lambda: _imgcore.probe(blob))
            proc = run(lambda: _imgcore.process(blob, [(320, None, False)]))
            print(json.dumps({"case": case, "probe": probe, "process": proc}), flush=True)
    print(json.dumps({"done": True}), flush=True)
    """
)


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, str]], str]:
    script = tmp_path_factory.mktemp("fuzz") / "fuzz.py"
    script.write_text(FUZZ_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(corpus_dir()), *FUZZ_FILES],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ},
        cwd=str(Path(__file__).resolve().parents[2]),
        check=False,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, lines, proc.stderr


def test_fuzz_never_crashes(fuzz_run: tuple[int, list[dict[str, str]], str]) -> None:
    code, lines, stderr = fuzz_run
    started = [x["start"] for x in lines if "start" in x]
    assert code == 0, (
        f"fuzz subprocess died with {code} during {started[-1] if started else '?'}: "
        f"{stderr[-2000:]}"
    )
    assert lines and lines[-1].get("done"), "fuzz run did not finish"
    results = [x for x in lines if "case" in x]
    assert len(results) > 100
    bad = [
        (r["case"], stage, r[stage])
        for r in results
        for stage in ("probe", "process")
        if not (r[stage] == "ok" or r[stage].startswith("error:"))
    ]
    assert bad == [], f"non-ImageError exceptions: {bad[:10]}"
    mismatched = [
        (r["case"], r[stage])
        for r in results
        for stage in ("probe", "process")
        if r[stage].startswith("error:")
        and r[stage].split(":")[2] != CLASS_FOR_CODE[r[stage].split(":")[1]].__name__
    ]
    assert mismatched == []


def test_truncated_files_are_corrupt(fuzz_run: tuple[int, list[dict[str, str]], str]) -> None:
    """Strict decoding: a file cut at 25/50/75% is corrupt_image, never grey-filled."""
    _, lines, _ = fuzz_run
    results = {x["case"]: x["process"] for x in lines if "case" in x}
    wrong = {}
    for name in FUZZ_FILES:
        for frac in STRICT_FRACTIONS:
            case = f"{name}:trunc{frac}"
            assert case in results, f"{case} did not run"
            if not results[case].startswith("error:corrupt_image"):
                wrong[case] = results[case]
    assert wrong == {}
