"""Pixel fidelity against Pillow (PRODUCT.md "Quality bar").

Reference: Image.open -> ImageOps.exif_transpose -> ImageCms.profileToProfile(embedded ICC ->
sRGB, default intent) -> 8-bit RGB/RGBA -> resize(LANCZOS) with the same geometry (cover:
crop box in floating point, then resize). See `_reference.open_reference`.
"""

from __future__ import annotations

import functools
import io

import _core as core
import numpy as np
import pytest
from _reference import (
    BIG_COVER,
    BOX,
    COVER,
    Entry,
    best_fidelity_psnr,
    check_size,
    entries,
    expected_geometry,
    fidelity_psnr,
    flatten_white,
    opaque_mask,
    open_reference,
    pillow_jpeg,
    psnr,
    raw_to_array,
    reference_candidates,
    source_has_alpha,
)
from PIL import Image

MIN_PSNR = 35.0
JPEG_MARGIN = 2.0
CMYK = "cmyk_park_icc.jpg"
SPECS: list[tuple[int, int | None, bool]] = [
    (320, None, False),
    (1280, None, False),
    BOX,
    COVER,
    BIG_COVER,
]
# The 99.6 MP file is one solid colour: one downscale checks it; the full set would only cost
# minutes of Pillow LANCZOS on 100 MP.
SPECS_FOR = {"huge_9643x10328.jpg": [(320, None, False)]}

CASES = [
    (e, spec) for e in entries("ok") if e.file != CMYK for spec in SPECS_FOR.get(e.file, SPECS)
]


def case_id(case: tuple[Entry, tuple[int, int | None, bool]]) -> str:
    e, (w, h, cover) = case
    return f"{e.file}-{w}x{h}{'-cover' if cover else ''}"


@functools.lru_cache(maxsize=2)
def reference(name: str) -> Image.Image:
    e = next(x for x in entries("ok") if x.file == name)
    return open_reference(e.data())


def render(e: Entry, spec: tuple[int, int | None, bool]) -> tuple[np.ndarray, np.ndarray]:
    """imgcore raw pixels, and the Pillow reference at the same size (size checked first).

    Where the crop offset is ambiguous by half a pixel, the closest whole-pixel candidate."""
    (raw,) = core.render_raw(e.data(), [spec])
    dw, dh = e.display_size
    g = expected_geometry(spec, dw, dh)
    assert raw.name == g.name
    assert check_size(g, raw.width, raw.height, dw, dh) == []
    assert raw.channels == (4 if source_has_alpha(e) else 3)
    got = raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)
    refs = reference_candidates(reference(e.file), g, raw.width, raw.height)
    _, ref = best_fidelity_psnr(got, refs)
    return got, ref


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_raw_psnr_vs_pillow(case: tuple[Entry, tuple[int, int | None, bool]]) -> None:
    e, spec = case
    got, ref = render(e, spec)
    score = fidelity_psnr(got, ref)
    assert score >= MIN_PSNR, f"{e.file} {spec}: PSNR {score:.2f} dB < {MIN_PSNR}"


# Rendered together, each rendition is resampled from the next larger full-frame one (a
# chain 3840 -> 1920 -> 1280 -> 640 -> 320, crops taken from the smallest one covering them):
# each must still meet the bar against Pillow's direct LANCZOS of the source.
CHAINED: list[tuple[int, int | None, bool]] = [
    *((w, None, False) for w in (320, 640, 1280, 1920, 3840)),
    BOX,
    COVER,
    BIG_COVER,
]
CHAINED_FILES = [e for e in entries("ok") if e.file != CMYK and e.file not in SPECS_FOR]


@pytest.mark.parametrize("e", CHAINED_FILES, ids=lambda e: e.file)
def test_chained_renditions_psnr_vs_pillow(e: Entry) -> None:
    raws = {r.name: r for r in core.render_raw(e.data(), CHAINED)}
    dw, dh = e.display_size
    geometries = {g.name: g for g in (expected_geometry(spec, dw, dh) for spec in CHAINED)}
    assert set(raws) == set(geometries)
    for name, g in geometries.items():
        raw = raws[name]
        assert check_size(g, raw.width, raw.height, dw, dh) == []
        got = raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)
        refs = reference_candidates(reference(e.file), g, raw.width, raw.height)
        score, _ = best_fidelity_psnr(got, refs)
        assert score >= MIN_PSNR, f"{e.file} {name}: PSNR {score:.2f} dB < {MIN_PSNR}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_jpeg_close_to_pillow_q82(case: tuple[Entry, tuple[int, int | None, bool]]) -> None:
    e, spec = case
    # Centred covers, as the reference geometry is (attention has its own test_attention).
    res = core.process(e.data(), [spec], formats=["jpeg"], palette=False, crop="centre")
    (out,) = res.outputs
    g = expected_geometry(spec, *e.display_size)
    refs = reference_candidates(reference(e.file), g, out.width, out.height)
    ours = np.asarray(Image.open(io.BytesIO(out.data)).convert("RGB"))
    # the whole-pixel crop candidate closest to the JPEG (see reference_candidates)
    ref = max(refs, key=lambda r: psnr(ours, flatten_white(r)))
    mask = opaque_mask(ref)
    if mask is not None and not mask.any():  # no opaque pixel: the JPEG is the white composite
        mask = None
    ref_rgb = flatten_white(ref)
    theirs = pillow_jpeg(ref_rgb)
    ours_db = psnr(ours, ref_rgb, mask)
    pillow_db = psnr(theirs, ref_rgb, mask)
    assert ours_db >= pillow_db - JPEG_MARGIN, (
        f"{e.file} {spec}: imgcore JPEG {ours_db:.2f} dB vs Pillow q82 {pillow_db:.2f} dB"
    )


@pytest.mark.parametrize("spec", [(320, None, False), (500, None, False), COVER])
def test_cmyk_no_gross_errors(spec: tuple[int, int | None, bool]) -> None:
    """CMYK is exempt from the dB bar; only inverted/swapped channels or wrong geometry count."""
    e = next(x for x in entries("ok") if x.file == CMYK)
    got, ref = render(e, spec)
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    assert psnr(got, ref) > 15.0
    for c in range(3):
        mean_diff = abs(g[..., c].mean() - r[..., c].mean())
        assert mean_diff < 25.0, f"channel {c}: mean differs by {mean_diff:.1f}"
        corr = float(np.corrcoef(g[..., c].ravel(), r[..., c].ravel())[0, 1])
        assert corr > 0.9, f"channel {c}: correlation {corr:.3f}"
