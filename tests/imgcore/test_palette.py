"""Palette: dominant colours and shares, Material seed (vs PyPI MCU), ThumbHash."""

from __future__ import annotations

import base64
import io
import re

import _core as core
import material_color_utilities as mcu
import numpy as np
import pytest
from _reference import delta_e76, entries, entry, hex_to_lab, open_reference
from PIL import Image

from imgpipe import _imgcore

HEX = re.compile(r"^#[0-9a-f]{6}$")
GOOGLE_BLUE = "#4285f4"
# Upstream QuantizeWsmeans seeds its point-to-cluster assignment with the C library's rand();
# a port with another PRNG converges to clusters that can differ by a rounding step, which moves
# the seed colour by a fraction of a ΔE. 2 ΔE76 (just noticeable side by side) bounds that while
# any other pick from the candidate list (a different cluster) lies far beyond it.
SEED_MAX_DELTA_E = 2.0
SEED_FILES = [
    "baseline_mongolia.jpeg",
    "progressive_tablets.jpg",
    "Landscape_1.jpg",
    "photo_nexus5x_hochuferweg.jpg",
    "photo_canon_sx60_orient6.jpg",
    "gif_still_crash_test.gif",
    "webp_lossy.webp",
    "webp_alpha.webp",
    "png_rgba_blackbug.png",
    "cmyk_park_icc.jpg",
]


def thumbnail(name: str) -> Image.Image:
    """A Pillow thumbnail (<= 128 px, as MCU's own image_to_argb) of the oriented sRGB source."""
    im = open_reference(entry(name).data())
    im.thumbnail((128, 128), Image.Resampling.LANCZOS)
    return im


def any_visible(im: Image.Image) -> bool:
    return im.mode != "RGBA" or bool((np.asarray(im)[..., 3] > 0).any())


def mcu_seed(im: Image.Image) -> str:
    rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
    argb = (rgba[..., 3] << 24) | (rgba[..., 0] << 16) | (rgba[..., 1] << 8) | rgba[..., 2]
    # prominent_colors_from_array = QuantizeCelebi(pixels, 128) + Score (defaults); first = seed
    return str(mcu.prominent_colors_from_array(argb.ravel(), 128)[0]).lower()


def ours(im: Image.Image) -> _imgcore.Palette:
    return _imgcore.palette_from_pixels(im.tobytes(), im.width, im.height, len(im.getbands()))


def check_palette(pal: _imgcore.Palette, has_alpha: bool, any_visible: bool = True) -> None:
    """`any_visible=False`: every pixel is fully transparent; an empty colour list is then
    the right answer."""
    assert (1 if any_visible else 0) <= len(pal.colors) <= 8
    shares = [s for _, s in pal.colors]
    assert all(0.0 <= s <= 1.0 for s in shares)
    if pal.colors:
        assert abs(sum(shares) - 1.0) < 0.01, f"shares sum to {sum(shares)}"
    assert shares == sorted(shares, reverse=True)
    for hexcolor, _ in pal.colors:
        assert HEX.match(hexcolor), hexcolor
    assert len({h for h, _ in pal.colors}) == len(pal.colors), "duplicate colours"
    assert HEX.match(pal.seed), pal.seed
    assert 1 <= len(pal.seed_candidates) <= 4, pal.seed_candidates
    assert pal.seed_candidates[0] == pal.seed
    assert all(HEX.match(c) for c in pal.seed_candidates), pal.seed_candidates
    assert len(set(pal.seed_candidates)) == len(pal.seed_candidates)
    raw = base64.b64decode(pal.thumbhash, validate=True)
    # ThumbHash: 5-byte header (+1 alpha byte) and 4-bit AC coefficients; about 20-30 bytes.
    assert 10 <= len(raw) <= 40, f"thumbhash of {len(raw)} bytes"
    assert bool(raw[2] >> 7) == has_alpha, "thumbhash alpha flag"


def thumbhash_average_rgb(th: str) -> np.ndarray:
    """Average colour stored in a ThumbHash header (reference thumbHashToAverageRGBA)."""
    h = base64.b64decode(th)
    header = h[0] | (h[1] << 8) | (h[2] << 16)
    lum = (header & 63) / 63
    p = ((header >> 6) & 63) / 31.5 - 1
    q = ((header >> 12) & 63) / 31.5 - 1
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    return np.clip(np.array([r, g, b]), 0, 1)


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_matches_material_color_utilities(name: str) -> None:
    im = thumbnail(name)
    pal = ours(im)
    want = mcu_seed(im)
    check_palette(pal, im.mode == "RGBA", any_visible(im))
    de = delta_e76(pal.seed.lower(), want)
    assert de <= SEED_MAX_DELTA_E, f"seed {pal.seed} vs MCU {want}: ΔE76 {de:.2f}"


@pytest.mark.parametrize("name", SEED_FILES)
def test_thumbhash_average_colour(name: str) -> None:
    im = thumbnail(name)
    pal = ours(im)
    arr = np.asarray(im).astype(np.float64) / 255.0
    if arr.shape[2] == 4:  # ThumbHash averages colour weighted by alpha
        w = arr[..., 3:4]
        mean = (arr[..., :3] * w).sum(axis=(0, 1)) / max(float(w.sum()), 1e-9)
    else:
        mean = arr.mean(axis=(0, 1))
    got = thumbhash_average_rgb(pal.thumbhash)
    # header quantisation: L in 1/63 steps, P/Q in 1/31.5 steps -> <= ~0.04 per channel
    assert np.abs(got - mean).max() < 0.06, f"thumbhash average {got} vs image mean {mean}"


def test_grey_image_gives_google_blue() -> None:
    grey = Image.new("RGB", (64, 48), (128, 128, 128))
    assert mcu_seed(grey) == GOOGLE_BLUE  # the upstream behaviour the product copies
    pal = ours(grey)
    assert pal.seed.lower() == GOOGLE_BLUE
    assert len(pal.colors) == 1
    assert delta_e76(pal.colors[0][0], "#808080") < 1.0
    assert pal.colors[0][1] == pytest.approx(1.0)
    # and through process(), from an encoded file
    buf = io.BytesIO()
    Image.new("L", (300, 200), 90).save(buf, "PNG")
    res = core.process(buf.getvalue(), [(320, None, False)])
    assert res.palette is not None
    assert res.palette.seed.lower() == GOOGLE_BLUE


def test_shares_of_synthetic_blocks() -> None:
    """60 % red, 30 % blue, 10 % green: three colours with those shares."""
    arr = np.zeros((100, 100, 3), dtype=np.uint8)
    arr[:60] = (220, 30, 30)
    arr[60:90] = (30, 40, 200)
    arr[90:] = (40, 180, 60)
    pal = _imgcore.palette_from_pixels(arr.tobytes(), 100, 100, 3)
    check_palette(pal, has_alpha=False)
    got = [(h, s) for h, s in pal.colors if s > 0.01]
    assert len(got) == 3, pal.colors
    for (h, s), (want_hex, want_share) in zip(
        got, [("#dc1e1e", 0.6), ("#1e28c8", 0.3), ("#28b43c", 0.1)], strict=True
    ):
        assert delta_e76(h, want_hex) < 2.0, (h, want_hex)
        assert s == pytest.approx(want_share, abs=0.02)


def test_transparent_pixels_are_ignored() -> None:
    """Fully transparent pixels do not count (as upstream's Celebi filter drops them)."""
    arr = np.zeros((50, 100, 4), dtype=np.uint8)
    arr[:, :50] = (10, 200, 10, 255)  # opaque green
    arr[:, 50:] = (250, 0, 250, 0)  # transparent magenta
    pal = _imgcore.palette_from_pixels(arr.tobytes(), 100, 50, 4)
    check_palette(pal, has_alpha=True)
    assert len(pal.colors) == 1
    assert delta_e76(pal.colors[0][0], "#0ac80a") < 2.0


def test_translucent_pixels_count_by_their_alpha() -> None:
    """Colours are what is seen: a pixel at a third of full opacity weighs a third. The seed
    stays upstream's, from fully opaque pixels only."""
    arr = np.zeros((50, 100, 4), dtype=np.uint8)
    arr[:, :50] = (10, 200, 10, 255)  # opaque green: weight 50 * 50 * 255
    arr[:, 50:] = (250, 0, 250, 85)  # magenta at 1/3: weight 50 * 50 * 85
    pal = _imgcore.palette_from_pixels(arr.tobytes(), 100, 50, 4)
    check_palette(pal, has_alpha=True)
    assert [(h, round(s, 4)) for h, s in pal.colors] == [("#0ac80a", 0.75), ("#fa00fa", 0.25)]
    assert pal.seed.lower() == mcu_seed(Image.fromarray(arr, "RGBA"))


@pytest.mark.parametrize("name", ["png_rgba_blackbug.png", "webp_alpha.webp"])
def test_images_without_opaque_pixels_at_thumbnail_size_have_colours(name: str) -> None:
    """blackbug's small opaque bug blurs into translucent pixels at 128 px; webp_alpha never
    reaches full opacity (alpha <= 174). Their colours come from the visible pixels."""
    small = thumbnail(name)
    arr = np.asarray(small.convert("RGBA"))
    assert not (arr[..., 3] == 255).any()
    pal = ours(small)
    check_palette(pal, has_alpha=True)
    # Each colour is the mean (in Lab) of its pixels, so the share-weighted mean of the colours
    # is the alpha-weighted Lab mean of the visible pixels, up to the rounding of every mean to
    # 8-bit sRGB on the way (a fraction of a ΔE each): 2 ΔE76 bounds it.
    pixels = arr.reshape(-1, 4)
    visible = pixels[pixels[:, 3] > 0]
    labs = np.array([hex_to_lab("#{:02x}{:02x}{:02x}".format(*p[:3])) for p in visible])
    alpha = visible[:, 3].astype(np.float64)
    want = (labs * alpha[:, None]).sum(axis=0) / alpha.sum()
    got = sum(share * hex_to_lab(h) for h, share in pal.colors)
    assert float(np.linalg.norm(got - want)) < 2.0, (got, want)


@pytest.mark.parametrize("e", entries("ok"), ids=lambda e: e.file)
def test_process_palette_well_formed(e) -> None:  # type: ignore[no-untyped-def]
    res = core.process(e.data(), [(320, None, False)], formats=["webp"])
    assert res.palette is not None
    ref = open_reference(e.data())
    small = ref.copy()
    small.thumbnail((128, 128), Image.Resampling.LANCZOS)
    check_palette(res.palette, ref.mode == "RGBA", any_visible(small))
