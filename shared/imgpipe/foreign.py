"""HEIF and AVIF pixels, decoded in process by the libraries that do it best, for the core.

The core reads the container itself (size, `irot`/`imir`, ICC or nclx colour, alpha) and checks
the pixel limit on it before anything here runs; what it cannot do is decode HEVC or AV1.
Why these libraries:

- HEIF/HEIC: libheif with libde265 through `pi-heif` (the decode-only build of pillow-heif:
  LGPL-3.0 libraries as shared objects in its manylinux wheel, no x265, so no GPL code; no
  system libheif needed). libheif assembles grids, applies `irot`/`imir`/`clap` once and
  converts 10-bit to 8-bit; the EXIF orientation inside is informational and never applied.
- AVIF: libavif with dav1d through Pillow (>= 11.3 bundles both, BSD-2-Clause). dav1d is the
  fastest AV1 decoder; libavif leaves `irot`/`imir` to the core, which applies them once.
- AVIF output: libaom through the same libavif (see `avif.py`).

No temporary files, no subprocesses. Decoder failures are corrupt images; a library that is
without AVIF support is a clear unsupported-format error, never a crash.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pi_heif
from PIL import AvifImagePlugin, Image

from imgpipe.errors import CorruptImage, UnsupportedFormat

FORMATS = frozenset({"heif", "avif"})


@dataclass(frozen=True, slots=True)
class Pixels:
    """8-bit RGB(A) rows as the decoder left them, in the shape `_imgcore.process` takes."""

    data: Any  # a buffer: bytes or memoryview
    width: int
    height: int
    channels: int
    stride: int
    oriented: bool  # the container's transforms are applied already
    owner: Any = None  # what keeps `data` alive: pi-heif's buffer lives in its image object

    def as_core(self) -> tuple[Any, int, int, int, int, bool]:
        return (self.data, self.width, self.height, self.channels, self.stride, self.oriented)


def is_container(data: bytes) -> bool:
    """ISO BMFF (HEIF, AVIF): the only inputs that may need a decoder from here."""
    return data[4:8] == b"ftyp"


def decode(data: bytes, fmt: str) -> Pixels:
    if fmt == "heif":
        return _heif(data)
    if fmt == "avif":
        return _avif(data)
    raise UnsupportedFormat(f"unsupported format: {fmt} is decoded by the core")


def _heif(data: bytes) -> Pixels:
    try:
        heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        mode = heif.mode
        if mode not in ("RGB", "RGBA") or heif.premultiplied_alpha:
            # Monochrome, premultiplied alpha ("RGBa") and the like: through Pillow, which
            # pi-heif builds on, to straight 8-bit RGB(A).
            im = heif.to_pillow().convert("RGBA" if heif.has_alpha else "RGB")
            return _from_pillow(im, oriented=True)
        width, height = heif.size
        buf = heif.data
        stride = heif.stride
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise CorruptImage(f"corrupt image: HEIF: {exc}") from None
    return Pixels(buf, width, height, len(mode), stride, oriented=True, owner=heif)


def _avif(data: bytes) -> Pixels:
    if not getattr(AvifImagePlugin, "SUPPORTED", False):
        raise UnsupportedFormat("unsupported format: this Pillow has no AVIF support")
    try:
        # The plugin class itself: Image.open's decompression-bomb guard would second-guess
        # the limit the core has already checked on the container.
        im: Image.Image = AvifImagePlugin.AvifImageFile(io.BytesIO(data))
        im.seek(0)  # the first frame of a sequence
        im.load()
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        return _from_pillow(im, oriented=False)
    except (RuntimeError, ValueError, OSError, EOFError, SyntaxError) as exc:
        raise CorruptImage(f"corrupt image: AVIF: {exc}") from None


def _from_pillow(im: Image.Image, *, oriented: bool) -> Pixels:
    channels = len(im.mode)
    raw = im.tobytes()
    return Pixels(raw, im.width, im.height, channels, im.width * channels, oriented)
