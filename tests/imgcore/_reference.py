"""Reference side of the imgcore tests: corpus manifest, expected geometry, Pillow pipeline, PSNR.

Nothing here calls imgcore: every expected value is computed independently (from MANIFEST.tsv,
from the PRODUCT.md rules, or with Pillow), so a test never checks the extension against itself.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps

# Pillow reads HEIC through pillow-heif (libheif, an independent build from pi-heif's); AVIF
# natively (libavif + dav1d).
pillow_heif.register_heif_opener(thumbnails=False)

# The corpus holds a legal 99.6 MP JPEG; Pillow's bomb guard (89 MP warning, 179 MP error) must
# not get in the way of the reference side.
Image.MAX_IMAGE_PIXELS = 200_000_000

DEFAULT_RENDITIONS: list[tuple[int, int | None, bool]] = [
    (320, None, False),
    (640, None, False),
    (1280, None, False),
    (1920, None, False),
    (3840, None, False),
]
BOX = (1920, 1080, False)
COVER = (1080, 1920, True)
# Larger than every corpus image in both dimensions: "crops to the box's aspect ratio at source
# scale" (PRODUCT.md, Pipeline step 4).
BIG_COVER = (20000, 10000, True)
ALL_SPECS: list[tuple[int, int | None, bool]] = [*DEFAULT_RENDITIONS, BOX, COVER, BIG_COVER]

ERROR_CODES = ("unsupported_format", "corrupt_image", "image_too_large")


def corpus_dir() -> Path:
    """`../shared/corpus` next to the repo root, or $IMGPIPE_CORPUS. Fails loudly when missing."""
    env = os.environ.get("IMGPIPE_CORPUS")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    if not (path / "MANIFEST.tsv").is_file():
        raise RuntimeError(
            f"image corpus not found at {path} (MANIFEST.tsv missing); set IMGPIPE_CORPUS"
        )
    return path


@dataclass(frozen=True)
class Entry:
    file: str
    format: str
    width: int | None
    height: int | None
    orientation: int  # 1 when the manifest has none
    expect: str  # ok | stretch | reject
    codes: tuple[str, ...]
    note: str

    @property
    def path(self) -> Path:
        return corpus_dir() / self.file

    def data(self) -> bytes:
        return self.path.read_bytes()

    @property
    def mode(self) -> str | None:
        m = re.search(r"\[mode (\w+);", self.note)
        return m.group(1) if m else None

    @property
    def frames(self) -> int:
        m = re.search(r"(\d+) frames", self.note)
        return int(m.group(1)) if m else 1

    @property
    def has_icc(self) -> bool:
        return "ICC profile" in self.note

    @property
    def display_size(self) -> tuple[int, int]:
        assert self.width is not None and self.height is not None
        if self.orientation >= 5:
            return self.height, self.width
        return self.width, self.height


def manifest() -> list[Entry]:
    rows: list[Entry] = []
    with (corpus_dir() / "MANIFEST.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            rows.append(
                Entry(
                    file=row["file"],
                    format=row["format"],
                    width=int(row["width"]) if row["width"] else None,
                    height=int(row["height"]) if row["height"] else None,
                    orientation=int(row["exif_orientation"]) if row["exif_orientation"] else 1,
                    expect=row["expect"],
                    codes=tuple(c for c in row["expect_code"].split("|") if c),
                    note=row["note"],
                )
            )
    if not rows:
        raise RuntimeError("MANIFEST.tsv is empty")
    return [promoted(e) for e in rows]


# HEIF and AVIF are decoded now (issue 13): the manifest's "stretch" files of these formats are
# held to the same bar as every "ok" file.
PROMOTED_FORMATS = ("HEIF", "AVIF")


def promoted(e: Entry) -> Entry:
    if e.expect == "stretch" and e.format in PROMOTED_FORMATS:
        return dataclasses.replace(e, expect="ok", codes=())
    return e


def entries(expect: str) -> list[Entry]:
    return [e for e in manifest() if e.expect == expect]


def entry(name: str) -> Entry:
    for e in manifest():
        if e.file == name:
            return e
    raise KeyError(name)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """What PRODUCT.md says a spec must produce from a display-size source."""

    name: str
    exact_w: float  # exact (unrounded) output size
    exact_h: float
    crop: tuple[float, float, float, float]  # source region (display coords) that is rendered


def expected_geometry(spec: tuple[int, int | None, bool], dw: int, dh: int) -> Geometry:
    w, h, cover = spec
    full = (0.0, 0.0, float(dw), float(dh))
    if h is None:
        if w >= dw:
            return Geometry(f"w{dw}", float(dw), float(dh), full)
        return Geometry(f"w{w}", float(w), dh * w / dw, full)
    if not cover:
        s = min(w / dw, h / dh, 1.0)
        return Geometry(f"{w}x{h}", dw * s, dh * s, full)
    s = max(w / dw, h / dh)
    if s <= 1.0:
        cw, ch = w / s, h / s
        ow, oh = float(w), float(h)
    else:  # box larger than the source: largest centred crop of the box's aspect ratio
        ratio = w / h
        if dw / dh > ratio:
            cw, ch = dh * ratio, float(dh)
        else:
            cw, ch = float(dw), dw / ratio
        ow, oh = cw, ch
    x0, y0 = (dw - cw) / 2, (dh - ch) / 2
    return Geometry(f"{w}x{h}-cover", ow, oh, (x0, y0, x0 + cw, y0 + ch))


def expected_outputs(
    specs: list[tuple[int, int | None, bool]], dw: int, dh: int
) -> dict[str, Geometry]:
    """Unique rendition names -> geometry (clamped widths collapse into one rendition)."""
    out: dict[str, Geometry] = {}
    for spec in specs:
        g = expected_geometry(spec, dw, dh)
        out.setdefault(g.name, g)
    return out


def check_size(g: Geometry, width: int, height: int, dw: int, dh: int) -> list[str]:
    problems = []
    if abs(width - g.exact_w) > 0.5 or abs(height - g.exact_h) > 0.5:
        problems.append(
            f"{g.name}: {width}x{height}, expected {g.exact_w:.2f}x{g.exact_h:.2f} (+-0.5)"
        )
    if width > dw or height > dh:
        problems.append(f"{g.name}: {width}x{height} upscales the {dw}x{dh} source")
    if width < 1 or height < 1:
        problems.append(f"{g.name}: empty {width}x{height}")
    return problems


# --------------------------------------------------------------------------- Pillow reference


def open_reference(data: bytes) -> Image.Image:
    """Pillow's view of the source: first frame, EXIF-oriented, ICC -> sRGB, 8-bit, RGB/RGBA."""
    im = Image.open(io.BytesIO(data))
    im.seek(0)
    im.load()
    icc = im.info.get("icc_profile")
    transparency = "transparency" in im.info
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte
        arr = np.asarray(im, dtype=np.uint32) >> 8
        im = Image.fromarray(arr.astype(np.uint8), "L")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or transparency
    alpha = im.convert("RGBA").getchannel("A") if has_alpha else None
    base = im
    if base.mode in ("RGBA", "RGBa"):
        base = base.convert("RGB")
    elif base.mode in ("LA", "La"):
        base = base.getchannel("L")
    elif base.mode in ("P", "PA"):
        base = base.convert("RGB")
    if icc:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(base, src, dst, outputMode="RGB")
        assert converted is not None
        base = converted
    else:
        base = base.convert("RGB")
    if alpha is not None:
        base = base.copy()
        base.putalpha(alpha)
    return base


def reference_rendition(ref: Image.Image, g: Geometry, width: int, height: int) -> np.ndarray:
    """LANCZOS of the (cropped) reference to the size imgcore chose (already size-checked)."""
    return reference_candidates(ref, g, width, height)[0]


def reference_candidates(
    ref: Image.Image, g: Geometry, width: int, height: int
) -> list[np.ndarray]:
    """Reference pixels for a rendition; more than one when the geometry is ambiguous.

    A cover box larger than the source is cut "at source scale": the output is a plain crop of
    `width` x `height` source pixels. When the centred offset falls on a half pixel (or the crop
    size itself was rounded), resampling at a fractional offset would blur the reference, and
    the two nearest whole-pixel offsets are equally centred: every such crop is a candidate.
    """
    if (width, height) == ref.size and g.crop == (0.0, 0.0, float(ref.width), float(ref.height)):
        return [np.asarray(ref)]
    crop_w, crop_h = g.crop[2] - g.crop[0], g.crop[3] - g.crop[1]
    if abs(crop_w - width) <= 0.5 and abs(crop_h - height) <= 0.5:  # no scaling: plain crop
        full = np.asarray(ref)
        xs = sorted({int(np.floor((ref.width - width) / 2)), int(np.ceil((ref.width - width) / 2))})
        ys = sorted(
            {int(np.floor((ref.height - height) / 2)), int(np.ceil((ref.height - height) / 2))}
        )
        return [full[y : y + height, x : x + width] for y in ys for x in xs]
    return [np.asarray(ref.resize((width, height), Image.Resampling.LANCZOS, box=g.crop))]


def flatten_white(rgba: np.ndarray) -> np.ndarray:
    if rgba.shape[2] == 3:
        return rgba
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    rgb = rgba[..., :3].astype(np.float64) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def pillow_jpeg(rgb: np.ndarray, quality: int = 82) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality, progressive=True)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def opaque_mask(ref: np.ndarray) -> np.ndarray | None:
    """Pixels fully opaque in the reference, or None for sources without alpha."""
    if ref.ndim == 3 and ref.shape[2] == 4:
        return np.asarray(ref[..., 3] == 255)
    return None


def best_fidelity_psnr(got: np.ndarray, refs: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """Best fidelity PSNR over equally valid reference candidates, and that candidate."""
    scored = [(fidelity_psnr(got, r), i) for i, r in enumerate(refs)]
    score, i = max(scored)
    return score, refs[i]


def fidelity_psnr(got: np.ndarray, ref: np.ndarray) -> float:
    """PSNR of imgcore pixels vs the reference, per the quality bar.

    RGB sources: all pixels. Alpha sources: RGB of the pixels opaque in the reference. Some alpha
    sources have no opaque pixel at all (webp_alpha.webp peaks at alpha 174, basn6a16 at 247);
    there the straight RGB of translucent pixels is ill-defined, so both sides are composited on
    white (what a viewer and the JPEG see) and compared over every pixel.
    """
    mask = opaque_mask(ref)
    if mask is None or mask.any():
        return psnr(got, ref, mask)
    return psnr(flatten_white(got), flatten_white(ref))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over RGB (first 3 channels), optionally only where mask is true."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    x = a[..., :3].astype(np.float64)
    y = b[..., :3].astype(np.float64)
    diff = (x - y) ** 2
    if mask is not None:
        if not mask.any():
            raise ValueError("empty mask: no opaque pixel to compare")
        diff = diff[mask]
    mse = float(diff.mean())
    if mse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(255.0**2 / mse))


def raw_to_array(pixels: bytes, width: int, height: int, channels: int) -> np.ndarray:
    arr = np.frombuffer(pixels, dtype=np.uint8)
    if arr.size != width * height * channels:
        raise ValueError(f"{arr.size} bytes for {width}x{height}x{channels}")
    return arr.reshape(height, width, channels)


def source_has_alpha(e: Entry) -> bool:
    """From the manifest's mode, and for palette images from the presence of transparency."""
    if e.mode in ("RGBA", "LA"):
        return True
    if e.mode == "P":
        with Image.open(e.path) as im:
            return "transparency" in im.info
    return False


# --------------------------------------------------------------------------- colour


def hex_to_lab(hexcolor: str) -> np.ndarray:
    """sRGB '#rrggbb' -> CIELAB (D65)."""
    rgb = np.array([int(hexcolor[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255.0
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = m @ lin / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e76(a: str, b: str) -> float:
    return float(np.linalg.norm(hex_to_lab(a) - hex_to_lab(b)))


# --------------------------------------------------------------------------- EXIF rewriting


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Copy of a JPEG whose existing EXIF Orientation (0x0112) value is set to `orientation`."""
    pos = 2
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = jpeg[pos + 1]
        (seglen,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        seg_start = pos + 4
        if marker == 0xE1 and jpeg[seg_start : seg_start + 6] == b"Exif\0\0":
            tiff = seg_start + 6
            endian = "<" if jpeg[tiff : tiff + 2] == b"II" else ">"
            (ifd,) = struct.unpack(endian + "I", jpeg[tiff + 4 : tiff + 8])
            ifd_pos = tiff + ifd
            (count,) = struct.unpack(endian + "H", jpeg[ifd_pos : ifd_pos + 2])
            for i in range(count):
                ent = ifd_pos + 2 + 12 * i
                tag, typ = struct.unpack(endian + "HH", jpeg[ent : ent + 4])
                if tag == 0x0112:
                    if typ != 3:
                        raise ValueError("Orientation is not a SHORT")
                    out = bytearray(jpeg)
                    out[ent + 8 : ent + 10] = struct.pack(endian + "H", orientation)
                    return bytes(out)
            raise ValueError("no Orientation tag in IFD0")
        if marker == 0xDA:
            break
        pos = seg_start + seglen - 2
    raise ValueError("no EXIF segment")
