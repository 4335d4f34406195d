"""HEIF/HEIC and AVIF inputs (issue 13): transforms applied once, 10-bit, alpha, ICC and nclx
colour, the primary image of a multi-image file, pixel limits before any decode, typed errors.

Test images are written here by independent encoders: pillow-heif (libheif + x265, a test-only
dependency) for HEIC and Pillow (libavif + libaom) for AVIF. References come from pyvips
(libvips' own libheif, which applies irot/imir itself) and from Pillow with ImageCms.
"""

from __future__ import annotations

import io
import struct

import _core as core
import numpy as np
import pillow_heif
import pytest
import pyvips
from _reference import entry, psnr, raw_to_array
from PIL import Image, ImageCms

from imgpipe import _imgcore, foreign, imaging
from imgpipe.errors import CorruptImage, ImageTooLarge
from imgpipe.renditions import parse_specs

MIN_PSNR = 35.0  # the fidelity bar of every other format (test_fidelity.py)


def scene(width: int = 96, height: int = 64, alpha: bool = False) -> np.ndarray:
    """Asymmetric on both axes, smooth enough for lossy coding to keep it recognisable."""
    y, x = np.mgrid[0:height, 0:width]
    a = np.zeros((height, width, 4 if alpha else 3), np.uint8)
    a[..., 0] = (x * 255 // (width - 1)).astype(np.uint8)
    a[..., 1] = (y * 255 // (height - 1)).astype(np.uint8)
    a[..., 2] = 60
    a[: height // 3, : width // 4, :3] = (250, 250, 40)  # a block near the top-left corner
    if alpha:
        a[..., 3] = np.where(x < width // 2, 255, 90).astype(np.uint8)
    return a


def heic(pixels: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "HEIF", quality=95, **save)
    return buf.getvalue()


def avif(pixels: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "AVIF", quality=95, speed=8, **save)
    return buf.getvalue()


def exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def full_size(data: bytes) -> np.ndarray:
    """imgcore's pixels of the whole image at its displayed size, as the pipeline decodes it."""
    info = _imgcore.probe(data)
    (raw,) = core.render_raw(data, [(info.display_width, None, False)])
    return raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)


def independent_view(data: bytes, fmt: str) -> np.ndarray:
    """Another library's displayed view: pillow-heif's libheif for HEIC, libvips' libheif
    (with dav1d) for AVIF; both apply irot/imir themselves."""
    if fmt == "heic":
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    im = pyvips.Image.new_from_buffer(data, "")
    return np.ndarray(
        buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands)
    )[..., :3]


TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def displayed(src: np.ndarray, orientation: int) -> np.ndarray:
    im = Image.fromarray(src)
    return np.asarray(im.transpose(TRANSPOSE[orientation]) if orientation != 1 else im)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_irot_imir_are_applied_exactly_once(fmt: str, orientation: int) -> None:
    src = scene()
    data = (heic if fmt == "heic" else avif)(src, exif=exif(orientation))
    # The writer turned the orientation into irot/imir, as phones do.
    assert _imgcore.probe(data).orientation == orientation
    got = full_size(data)
    # Fidelity against another decoder of the same file; orientation against the source
    # (4:2:0 coding of the sharp block costs a few dB, a wrong turn costs far more).
    assert psnr(got, independent_view(data, fmt)) >= MIN_PSNR
    want = displayed(src, orientation)
    assert got.shape == want.shape
    ours = psnr(got, want)
    assert ours >= 30.0
    for other in set(range(1, 9)) - {orientation}:
        wrong = displayed(src, other)
        if wrong.shape == got.shape:
            assert psnr(got, wrong) < ours - 10, f"looks like orientation {other}"


def test_the_iphone_photo_is_upright_and_its_exif_orientation_is_not_applied_again() -> None:
    e = entry("heic_iphone12pro_car.heic")
    data = e.data()
    # The camera wrote irot for a portrait shot and also an EXIF orientation tag.
    info = _imgcore.probe(data)
    assert (info.display_width, info.display_height) == (e.width, e.height)
    (raw,) = core.render_raw(data, [(756, None, False)])
    assert (raw.width, raw.height) == (756, 1008)
    got = raw_to_array(raw.pixels, raw.width, raw.height, raw.channels)
    ref = Image.open(io.BytesIO(data))  # pillow-heif: transforms applied, EXIF tag reset
    icc = ref.info["icc_profile"]
    ref = ImageCms.profileToProfile(
        ref.convert("RGB"),
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    assert ref is not None
    want = np.asarray(ref.resize((756, 1008), Image.Resampling.LANCZOS))
    assert psnr(got, want) >= MIN_PSNR


def test_ten_bit_heic_is_scaled_to_eight_bit() -> None:
    src = scene(80, 48)
    wide = (src.astype(np.uint16) * 257).astype(">u2")  # 16-bit big-endian RGB
    heif = pillow_heif.from_bytes("RGB;16", (80, 48), wide.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=95)  # pillow-heif writes 16-bit input as 10-bit HEVC
    data = buf.getvalue()
    assert foreign.decode(data, "heif").channels == 3
    box = struct.unpack(">B", data[data.find(b"pixi") + 9 : data.find(b"pixi") + 10])[0]
    assert box == 10, "the test image must really be 10-bit"
    assert psnr(full_size(data), src) >= MIN_PSNR


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_alpha_is_kept(fmt: str) -> None:
    src = scene(alpha=True)
    data = (heic if fmt == "heic" else avif)(src)
    assert _imgcore.probe(data).has_alpha
    got = full_size(data)
    assert got.shape[2] == 4
    assert np.abs(got[..., 3].astype(int) - src[..., 3]).max() <= 8
    res = core.process(data, [(96, None, False)], formats=["webp"], palette=False)
    with Image.open(io.BytesIO(res.outputs[0].data)) as out:
        assert out.mode == "RGBA"


def display_p3_icc() -> bytes:
    with Image.open(entry("heic_iphone12pro_car.heic").path) as im:
        icc = bytes(im.info["icc_profile"])
    assert "Display P3" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    return icc


def p3_to_srgb(src: np.ndarray) -> np.ndarray:
    out = ImageCms.profileToProfile(
        Image.fromarray(src),
        ImageCms.ImageCmsProfile(io.BytesIO(display_p3_icc())),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    assert out is not None
    return np.asarray(out)


def saturated() -> np.ndarray:
    a = scene()
    a[:, :48] = (20, 200, 40)  # a P3 green well outside sRGB
    return a


def test_an_icc_profile_is_converted_to_srgb() -> None:
    src = saturated()
    data = heic(src, icc_profile=display_p3_icc())
    got = full_size(data)
    want = p3_to_srgb(src)
    assert psnr(got, want) >= MIN_PSNR
    assert psnr(got, src) < psnr(got, want), "the profile must change the pixels"


def test_nclx_colour_is_converted_to_srgb() -> None:
    src = saturated()
    im = Image.fromarray(src)
    im.info["nclx_profile"] = {
        "color_primaries": 12,  # Display P3 (SMPTE EG 432-1)
        "transfer_characteristics": 13,  # sRGB
        "matrix_coefficients": 6,
        "full_range_flag": 1,
    }
    buf = io.BytesIO()
    pillow_heif.from_pillow(im).save(buf, quality=95, save_nclx_profile=True)
    data = buf.getvalue()
    i = data.find(b"colrnclx")
    assert i > 0 and struct.unpack(">H", data[i + 8 : i + 10])[0] == 12
    got = full_size(data)
    assert psnr(got, p3_to_srgb(src)) >= MIN_PSNR
    assert psnr(got, src) < psnr(got, p3_to_srgb(src))


def test_the_primary_image_of_a_multi_image_file_is_decoded() -> None:
    first, second = scene(), 255 - scene()
    heif = pillow_heif.from_bytes("RGB", (96, 64), first.tobytes())
    heif.add_frombytes("RGB", (96, 64), second.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=95, primary_index=1)
    got = full_size(buf.getvalue())
    assert psnr(got, second) >= MIN_PSNR
    assert psnr(got, first) < 20


def patch_ispe(data: bytes, width: int, height: int) -> bytes:
    i = data.find(b"ispe")
    assert i > 0
    return data[: i + 8] + struct.pack(">II", width, height) + data[i + 16 :]


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_the_pixel_limit_is_checked_on_the_container_before_decoding(fmt: str) -> None:
    data = (heic if fmt == "heic" else avif)(scene())
    limits = imaging.Limits(max_pixels=96 * 64 - 1, max_bytes=1 << 20)
    with pytest.raises(ImageTooLarge):
        imaging.process(data, parse_specs("64"), limits)
    # A header claiming 2 gigapixels over a 96x64 bitstream: refused as too large by the core
    # (a decoder reached first would have failed on the mismatch, or tried to allocate).
    huge = patch_ispe(data, 50_000, 40_000)
    with pytest.raises(ImageTooLarge):
        imaging.process(huge, parse_specs("64"), imaging.Limits(100_000_000, 1 << 20))


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_damaged_files_are_typed_errors(fmt: str) -> None:
    data = (heic if fmt == "heic" else avif)(scene())
    limits = imaging.Limits(100_000_000, 1 << 20)
    for bad in [data[:40], data[: len(data) // 2], data[:-10]]:
        with pytest.raises((CorruptImage, imaging.PermanentError)) as exc:
            imaging.process(bad, parse_specs("64"), limits)
        assert exc.value.code in ("corrupt_image", "unsupported_format")


def test_an_avif_sequence_gives_its_first_frame() -> None:
    first, second = scene(), 255 - scene()
    buf = io.BytesIO()
    Image.fromarray(first).save(
        buf, "AVIF", save_all=True, append_images=[Image.fromarray(second)], quality=95, speed=8
    )
    data = buf.getvalue()
    assert _imgcore.probe(data).frame_count == 2
    got = full_size(data)
    assert psnr(got, first) >= MIN_PSNR


def test_a_cropped_greyscale_heic_shows_its_clean_aperture() -> None:
    """pillow-heif codes 40x32 grey as 64x64 HEVC with a `clap` crop: the shown size is 40x32,
    and the pixel limit still counts the 64x64 the decoder allocates."""
    grey = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (32, 1))
    buf = io.BytesIO()
    Image.fromarray(grey, "L").save(buf, "HEIF", quality=95)
    data = buf.getvalue()
    assert b"clap" in data, "the test image must carry a clean aperture"
    info = _imgcore.probe(data)
    assert (info.display_width, info.display_height) == (40, 32)
    got = full_size(data)
    assert got.shape == (32, 40, 3)
    assert psnr(got, np.repeat(grey[..., None], 3, axis=2)) >= MIN_PSNR
    with pytest.raises(_imgcore.ImageTooLarge):
        _imgcore.probe(data, max_pixels=40 * 32)
