"""EXIF orientations 1..8: display size and pixels match Pillow's exif_transpose."""

from __future__ import annotations

import base64
import io

import _core as core
import pytest
from _reference import (
    entries,
    entry,
    expected_geometry,
    open_reference,
    psnr,
    raw_to_array,
    reference_rendition,
    with_orientation,
)
from PIL import Image

from imgpipe import _imgcore

SPEC = (640, None, False)


def oriented_variant(orientation: int) -> bytes:
    """Landscape_1.jpg (stored 1800x1200) with its EXIF Orientation rewritten in a copy."""
    data = with_orientation(entry("Landscape_1.jpg").data(), orientation)
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == orientation
    return data


# With a full-size rendition beside it, the renditions hold more pixels than the source and
# imgcore orients the source first; alone, the 640 rendition is resized, then oriented.
WITH_FULL_SIZE = (3840, None, False)


def check_against_pillow(data: bytes, display: tuple[int, int], *, full_size: bool) -> None:
    ref_full = open_reference(data)
    assert ref_full.size == display  # the premise, from Pillow
    specs = [SPEC, WITH_FULL_SIZE] if full_size else [SPEC]
    raw = core.render_raw(data, specs)[0]
    g = expected_geometry(SPEC, *display)
    assert (raw.name, raw.width) == (g.name, 640)
    assert abs(raw.height - g.exact_h) <= 0.5
    got = raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)
    ref = reference_rendition(ref_full, g, raw.width, raw.height)
    score = psnr(got, ref)
    assert score >= 35.0, f"PSNR {score:.2f} dB vs Pillow exif_transpose"


@pytest.mark.parametrize("full_size", [False, True], ids=["orient-renditions", "orient-source"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_rewritten_orientation(orientation: int, full_size: bool) -> None:
    data = oriented_variant(orientation)
    display = (1200, 1800) if orientation >= 5 else (1800, 1200)
    info = _imgcore.probe(data)
    assert info.orientation == orientation
    assert (info.width, info.height) == (1800, 1200)
    assert (info.display_width, info.display_height) == display
    check_against_pillow(data, display, full_size=full_size)


@pytest.mark.parametrize(
    "e",
    [e for e in entries("ok") if e.orientation != 1 or e.file.startswith("Landscape_")],
    ids=lambda e: e.file,
)
def test_corpus_orientation(e) -> None:  # type: ignore[no-untyped-def]
    data = e.data()
    info = _imgcore.probe(data)
    assert info.orientation == e.orientation
    assert (info.width, info.height) == (e.width, e.height)
    assert (info.display_width, info.display_height) == e.display_size
    check_against_pillow(data, e.display_size, full_size=False)
    check_against_pillow(data, e.display_size, full_size=True)


def test_orientations_show_the_same_picture() -> None:
    """All Landscape_N.jpg display the same scene: imgcore's renditions agree with each other.

    Pillow's own oriented renditions of these files score ~31 dB against Landscape_1 (separately
    encoded JPEGs); a mirrored or rotated frame scores ~8-9 dB. 25 dB separates the two.
    """
    base = None
    for n in (1, 3, 5, 6, 8):
        (raw,) = core.render_raw(entry(f"Landscape_{n}.jpg").data(), [SPEC])
        arr = raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)
        if base is None:
            base = arr
            continue
        assert arr.shape == base.shape
        score = psnr(arr, base)
        assert score >= 25.0, f"Landscape_{n}: PSNR {score:.2f} dB vs Landscape_1"


def thumbhash_is_landscape(th: str) -> bool:
    """The ThumbHash header's landscape flag (bit 15 of its second header word)."""
    raw = base64.b64decode(th)
    return bool(raw[4] >> 7)


@pytest.mark.parametrize(
    "specs",
    [
        [(300, 300, True)],
        # Together larger than the source: the source itself is oriented first.
        [(1200, 1200, True), (1200, 1000, True)],
    ],
    ids=["orient-renditions", "orient-source"],
)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_palette_without_full_frame_rendition_sees_the_display_orientation(
    orientation: int, specs: list[tuple[int, int, bool]]
) -> None:
    """With only cover crops, the palette's thumbnail comes from the source: oriented once."""
    res = core.process(oriented_variant(orientation), specs, formats=["jpeg"])
    assert res.palette is not None
    assert thumbhash_is_landscape(res.palette.thumbhash) == (orientation < 5)
