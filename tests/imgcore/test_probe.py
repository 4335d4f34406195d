"""probe(): format, sizes, orientation, alpha, frames and ICC against MANIFEST.tsv."""

from __future__ import annotations

import pytest
from _reference import PROMOTED_FORMATS, Entry, entries, entry, source_has_alpha
from PIL import Image

from imgpipe import _imgcore

FORMATS = {
    "JPEG": "jpeg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "TIFF": "tiff",
    "HEIF": "heif",
    "AVIF": "avif",
}


@pytest.mark.parametrize("e", entries("ok"), ids=lambda e: e.file)
def test_probe_matches_manifest(e: Entry) -> None:
    info = _imgcore.probe(e.data())
    assert isinstance(info, _imgcore.ImageInfo)
    dw, dh = e.display_size
    got = {
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "display_width": info.display_width,
        "display_height": info.display_height,
        "orientation": info.orientation,
        "has_alpha": info.has_alpha,
        "frame_count": info.frame_count,
        "has_icc": info.has_icc,
    }
    want = {
        "format": FORMATS[e.format],
        "width": e.width,
        "height": e.height,
        "display_width": dw,
        "display_height": dh,
        "orientation": e.orientation,
        "has_alpha": source_has_alpha(e),
        "frame_count": e.frames,
        "has_icc": e.has_icc,
    }
    if e.format in PROMOTED_FORMATS:
        # The manifest gives the displayed view (pillow-heif and Pillow apply irot/imir); the
        # core reports the coded size with irot/imir as the orientation, as for EXIF.
        swapped = info.orientation >= 5
        want["width"], want["height"] = (dh, dw) if swapped else (dw, dh)
        want["orientation"] = info.orientation
        with Image.open(e.path) as im:
            want["has_icc"] = bool(im.info.get("icc_profile"))
    assert got == want


def test_animated_sources_report_frames() -> None:
    for name in ("gif_animated_rotating_squares.gif", "webp_animated.webp"):
        info = _imgcore.probe(entry(name).data())
        assert info.frame_count > 1, name


def test_probe_huge_respects_max_pixels() -> None:
    data = entry("huge_9643x10328.jpg").data()
    with pytest.raises(_imgcore.ImageTooLarge) as exc:
        _imgcore.probe(data, max_pixels=99_000_000)
    assert exc.value.code == "image_too_large"
    info = _imgcore.probe(data)
    assert (info.width, info.height) == (9643, 10328)
    # exactly at the limit is still allowed
    assert _imgcore.probe(data, max_pixels=9643 * 10328).width == 9643
