"""process() over every `ok` corpus file: names, sizes, formats, metadata, alpha handling."""

from __future__ import annotations

import functools
import io

import _core as core
import numpy as np
import pytest
from _reference import (
    ALL_SPECS,
    DEFAULT_RENDITIONS,
    Entry,
    check_size,
    entries,
    entry,
    expected_geometry,
    expected_outputs,
    open_reference,
    reference_rendition,
    source_has_alpha,
)
from PIL import Image

from imgpipe import _imgcore

OK = entries("ok")


@functools.lru_cache(maxsize=4)
def processed(name: str) -> _imgcore.Processed:
    return core.process(entry(name).data(), ALL_SPECS)


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("e", OK, ids=lambda e: e.file)
def test_outputs_names_and_sizes(e: Entry) -> None:
    res = processed(e.file)
    dw, dh = e.display_size
    want = expected_outputs(ALL_SPECS, dw, dh)
    keys = [(o.name, o.format) for o in res.outputs]
    assert len(keys) == len(set(keys)), f"duplicate outputs: {sorted(keys)}"
    assert set(keys) == {(n, f) for n in want for f in ("jpeg", "webp")}
    problems: list[str] = []
    for o in res.outputs:
        problems += check_size(want[o.name], o.width, o.height, dw, dh)
    assert problems == []
    assert (res.info.display_width, res.info.display_height) == (dw, dh)


@pytest.mark.parametrize("e", OK, ids=lambda e: e.file)
def test_outputs_decode_with_right_format_and_no_metadata(e: Entry) -> None:
    res = processed(e.file)
    alpha = source_has_alpha(e)
    problems: list[str] = []
    for o in res.outputs:
        im = decode(o.data)
        where = f"{o.name}.{o.format}"
        if im.size != (o.width, o.height):
            problems.append(f"{where}: decodes as {im.size}, reports {o.width}x{o.height}")
        for key in ("exif", "icc_profile", "xmp"):
            if im.info.get(key):
                problems.append(f"{where}: carries {key} metadata")
        if o.format == "jpeg":
            if im.format != "JPEG":
                problems.append(f"{where}: decodes as {im.format}")
            if not im.info.get("progressive"):
                problems.append(f"{where}: JPEG is not progressive")
            if im.mode != "RGB":
                problems.append(f"{where}: JPEG mode {im.mode}, expected RGB")
            if b"Exif\0\0" in o.data[:65536]:
                problems.append(f"{where}: JPEG has an Exif APP1 segment")
        elif o.format == "webp":
            if im.format != "WEBP":
                problems.append(f"{where}: decodes as {im.format}")
            if alpha and im.mode != "RGBA":
                problems.append(f"{where}: alpha source but WebP mode {im.mode}")
        else:
            problems.append(f"{where}: unexpected format {o.format}")
    assert problems == []


@pytest.mark.parametrize("e", OK, ids=lambda e: e.file)
def test_palette_present_by_default(e: Entry) -> None:
    pal = processed(e.file).palette
    assert pal is not None
    assert len(pal.colors) <= 8
    assert pal.seed.startswith("#")


def test_jpeg_flattens_alpha_on_white() -> None:
    e = entry("png_rgba_blackbug.png")
    res = core.process(e.data(), [(320, None, False)], formats=["jpeg"], palette=False)
    (out,) = res.outputs
    g = expected_geometry((320, None, False), *e.display_size)
    ref = reference_rendition(open_reference(e.data()), g, out.width, out.height)
    transparent = ref[..., 3] == 0
    assert transparent.mean() > 0.3, "test premise: blackbug is mostly transparent"
    # Away from the bug (more than one 8x8 JPEG block from any visible pixel) JPEG ringing
    # cannot reach: those pixels must be white. Black (the colour stored under the transparent
    # pixels) or a grey background would be far below.
    far = ~dilate(~transparent, 8)
    assert far.mean() > 0.3
    jpeg = np.asarray(decode(out.data).convert("RGB")).astype(np.int32)
    assert jpeg[far].min() >= 245, f"darkest far-transparent pixel {jpeg[far].min(axis=0)}"
    assert jpeg[transparent].mean() >= 250


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for axis in (0, 1):
        acc = out.copy()
        for d in range(1, radius + 1):
            acc |= np.roll(out, d, axis=axis) | np.roll(out, -d, axis=axis)
        out = acc
    return out


@pytest.mark.parametrize("e", [e for e in OK if source_has_alpha(e)], ids=lambda e: e.file)
def test_webp_keeps_alpha(e: Entry) -> None:
    res = core.process(e.data(), [(640, None, False)], formats=["webp"], palette=False)
    (out,) = res.outputs
    g = expected_geometry((640, None, False), *e.display_size)
    ref = reference_rendition(open_reference(e.data()), g, out.width, out.height)
    im = decode(out.data)
    assert im.mode == "RGBA"
    got_a = np.asarray(im)[..., 3].astype(np.float64)
    ref_a = ref[..., 3].astype(np.float64)
    assert (ref_a < 255).any(), "test premise: the source has transparent pixels"
    assert float(np.abs(got_a - ref_a).mean()) < 3.0
    assert (got_a[ref_a == 0] < 16).mean() > 0.98


def test_formats_argument_selects_encoders() -> None:
    data = entry("progressive_tablets.jpg").data()
    for formats in (["jpeg"], ["webp"], ["jpeg", "webp"]):
        res = core.process(data, DEFAULT_RENDITIONS, formats=formats, palette=False)
        assert sorted({o.format for o in res.outputs}) == sorted(formats)
        assert res.palette is None
        assert {o.name for o in res.outputs} == {"w320", "w640", "w650"}
