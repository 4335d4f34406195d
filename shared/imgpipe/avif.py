"""AVIF renditions: SVT-AV1 through libavif, as pillow-avif-plugin's wheel bundles them.

Why this encoder: libavif can drive libaom, rav1e and SVT-AV1; `scripts/avif_encoders.py`
runs all three through one libavif build on the same renditions at libavif's quality 60 and
speed 6, one thread each. On the corpus photos SVT-AV1 took 4.5 CPU-s against libaom's 10.4
and rav1e's 23.2, for 1 % fewer bytes than libaom at a higher SSIM (0.968 vs 0.966); rav1e
made 18 % more bytes. Pillow's own libavif has libaom only, hence the plugin (MIT; libavif,
SVT-AV1, libaom, rav1e and dav1d are BSD, no GPL); its AVIF support stays registered in
Pillow, and imgpipe calls the plugin's writer directly, so nothing depends on which of the
two Pillow picks for "AVIF". SVT-AV1 refuses frames under 8 px on a side: those few tiny
renditions go to libaom, as does any frame SVT-AV1 fails on.

Pixels come from the core's own renditions (sRGB, oriented); libavif tags them nclx
BT.709 / sRGB / BT.601, full range. The writer releases the GIL while encoding, so the
renditions of an image are encoded on `threads` threads at once, one rendition per thread
(the encoders' own threading scales poorly on small frames).
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

# SVT-AV1 prints its configuration at "info" level to stderr for every frame unless told
# otherwise; this must be set before its first encoder exists.
os.environ.setdefault("SVT_LOG", "1")

from PIL import Image
from pillow_avif import AvifImagePlugin as _writer

from imgpipe import _imgcore
from imgpipe.errors import Internal

log = logging.getLogger(__name__)

CONTENT_TYPE = "image/avif"
ENCODER = "svt"
FALLBACK = "aom"
SVT_MIN_SIDE = 8


@dataclass(frozen=True, slots=True)
class Encoded:
    name: str
    format: str
    width: int
    height: int
    data: bytes


def encode_one(r: _imgcore.RawRendition, quality: int, speed: int) -> Encoded:
    mode = "RGBA" if r.channels == 4 else "RGB"
    im = Image.frombuffer(mode, (r.width, r.height), r.pixels, "raw", mode, 0, 1)
    codecs = [ENCODER, FALLBACK] if min(r.width, r.height) >= SVT_MIN_SIDE else [FALLBACK]
    failure: Exception | None = None
    for codec in codecs:
        try:
            return Encoded(r.name, "avif", r.width, r.height, _encode(im, quality, speed, codec))
        except (OSError, ValueError, RuntimeError) as exc:
            log.info("AVIF encode of %s with %s failed: %s", r.name, codec, exc)
            failure = exc
    raise Internal(f"AVIF encode of {r.name} failed: {failure}")


def _encode(im: Image.Image, quality: int, speed: int, codec: str) -> bytes:
    buf = io.BytesIO()
    im.encoderinfo = {"quality": quality, "speed": speed, "codec": codec, "max_threads": 1}
    _writer._save(im, buf, "")
    return buf.getvalue()


def encode_all(
    rendered: Sequence[_imgcore.RawRendition], quality: int, speed: int, threads: int
) -> tuple[list[Encoded], float]:
    """Every rendition as AVIF, in `rendered`'s order; and the CPU-seconds it took (wall time
    summed over renditions, as the core reports its stages)."""
    biggest_first = sorted(
        range(len(rendered)), key=lambda i: -rendered[i].width * rendered[i].height
    )
    spent: list[float] = [0.0] * len(rendered)

    def run(i: int) -> Encoded:
        start = time.perf_counter()
        try:
            return encode_one(rendered[i], quality, speed)
        finally:
            spent[i] = time.perf_counter() - start

    workers = max(1, min(threads, len(rendered)))
    if workers == 1:
        done = {i: run(i) for i in biggest_first}
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="avif") as pool:
            done = dict(zip(biggest_first, pool.map(run, biggest_first), strict=True))
    return [done[i] for i in range(len(rendered))], sum(spent)
