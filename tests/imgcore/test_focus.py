"""Cover crops around a focal point: the cover rendition matches Pillow's LANCZOS of the box
cut around that point (clamped at the edges), for focal points left, right and off-centre."""

from __future__ import annotations

import io

import numpy as np
import pytest
from _reference import Entry, open_reference, psnr
from PIL import Image

from imgpipe import _imgcore


def _cover(data: bytes, focus: tuple[float, float]) -> np.ndarray:
    done = _imgcore.process(data, [(200, 200, True)], palette=False, formats=["webp"], focus=focus)
    [out] = done.outputs
    assert (out.width, out.height) == (200, 200)
    return np.asarray(Image.open(io.BytesIO(out.data)).convert("RGB"))


@pytest.mark.parametrize("fx", [0.0, 0.3, 0.5, 1.0])
def test_the_cover_follows_the_focal_point(entries_by_name: dict[str, Entry], fx: float) -> None:
    entry = entries_by_name["Landscape_3.jpg"]
    data = entry.path.read_bytes()
    ref = open_reference(data).convert("RGB")
    w, h = ref.size
    assert w > h  # a landscape: a square cover has room to move sideways
    side = h
    left = min(max(fx * w - side / 2, 0.0), w - side)
    expected = np.asarray(
        ref.resize((200, 200), Image.Resampling.LANCZOS, box=(left, 0, left + side, side))
    )
    got = _cover(data, (fx, 0.5))
    assert psnr(got, expected) > 30, fx  # WebP q80 of the same crop
    others = [x for x in (0.0, 1.0) if abs(x - fx) > 0.4]
    for other in others:
        far = min(max(other * w - side / 2, 0.0), w - side)
        wrong = np.asarray(
            ref.resize((200, 200), Image.Resampling.LANCZOS, box=(far, 0, far + side, side))
        )
        assert psnr(got, wrong) < psnr(got, expected) - 3, (fx, other)


def test_a_focal_point_outside_0_1_is_refused(entries_by_name: dict[str, Entry]) -> None:
    data = entries_by_name["Landscape_3.jpg"].path.read_bytes()
    for bad in ((1.5, 0.5), (-0.1, 0.5), (float("nan"), 0.5)):
        with pytest.raises(ValueError, match="focus"):
            _imgcore.process(data, [(200, 200, True)], focus=bad)
