"""Thin typed wrapper over the Rust core; the only importer of `imgpipe._imgcore`.
Byte limits are checked here, before any byte reaches the core; pixel limits inside it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from imgpipe import _imgcore, avif, foreign
from imgpipe.errors import FileTooLarge, PermanentError, permanent_from_code
from imgpipe.renditions import RenditionSpec
from imgpipe.settings import (
    AVIF_QUALITY,
    AVIF_SPEED,
    JPEG_QUALITY,
    OUTPUT_FORMATS,
    WEBP_METHOD,
    WEBP_QUALITY,
    Settings,
)

T = TypeVar("T")

ImageInfo = _imgcore.ImageInfo
Palette = _imgcore.Palette

CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": avif.CONTENT_TYPE}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
CORE_FORMATS = ("jpeg", "webp")


class Output(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Processed:
    """One image's outputs: the core's encodes plus those made outside it (AVIF)."""

    info: ImageInfo
    outputs: list[Output]
    palette: Palette | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Encoding:
    """What the outputs are made of, from Settings."""

    formats: tuple[str, ...] = OUTPUT_FORMATS
    avif_quality: int = AVIF_QUALITY
    avif_speed: int = AVIF_SPEED
    crop: str = "attention"  # covers without a focal point: "attention" | "centre"

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoding:
        return cls(settings.formats, settings.avif_quality, settings.avif_speed, settings.crop)


@dataclass(frozen=True, slots=True)
class Limits:
    max_pixels: int
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_pixels, max(settings.max_upload_bytes, settings.max_object_bytes))


def check_size(size: int, limits: Limits) -> None:
    if size > limits.max_bytes:
        raise FileTooLarge(f"file is {size} bytes; the limit is {limits.max_bytes} bytes")


def _core(call: Callable[[], T]) -> T:
    try:
        return call()
    except _imgcore.ImageError as exc:
        raise permanent_from_code(exc.code, str(exc)) from exc


def probe(data: bytes, limits: Limits) -> ImageInfo:
    check_size(len(data), limits)
    return _core(lambda: _imgcore.probe(data, max_pixels=limits.max_pixels))


def _decode_outside(data: bytes, limits: Limits) -> tuple[foreign.Pixels | None, float]:
    """HEIF and AVIF pixels, decoded only after the core has checked the container's size
    against the pixel limit."""
    if not foreign.is_container(data):
        return None, 0.0
    info = probe(data, limits)
    if info.format not in foreign.FORMATS:
        return None, 0.0
    start = time.perf_counter()
    pixels = foreign.decode(data, info.format)
    return pixels, time.perf_counter() - start


def process(
    data: bytes,
    specs: Sequence[RenditionSpec],
    limits: Limits,
    *,
    threads: int = 1,
    focus: Sequence[float] | None = None,
    encoding: Encoding | None = None,
) -> Processed:
    check_size(len(data), limits)
    enc = encoding or Encoding()
    core_specs = [spec.as_core() for spec in specs]
    at = None if focus is None else (float(focus[0]), float(focus[1]))
    external, decode_secs = _decode_outside(data, limits)
    with_avif = "avif" in enc.formats
    done = _core(
        lambda: _imgcore.process(
            data,
            core_specs,
            palette=True,
            max_pixels=limits.max_pixels,
            jpeg_quality=JPEG_QUALITY,
            webp_quality=WEBP_QUALITY,
            webp_method=WEBP_METHOD,
            formats=[f for f in enc.formats if f in CORE_FORMATS],
            threads=threads,
            focus=at,
            crop=enc.crop,
            decoded=None if external is None else external.as_core(),
            keep_pixels=with_avif,
        )
    )
    timings = dict(done.timings)
    timings["decode"] = timings.get("decode", 0.0) + decode_secs
    core_outputs: list[Output] = list(done.outputs)
    extra: dict[str, Output] = {}
    if with_avif:
        encoded, secs = avif.encode_all(done.rendered, enc.avif_quality, enc.avif_speed, threads)
        extra = {e.name: e for e in encoded}
        timings["avif"] = secs
    # Per rendition, the formats in the order IMGPIPE_FORMATS lists them.
    outputs: list[Output] = []
    names = list(dict.fromkeys(o.name for o in core_outputs)) or list(extra)
    for name in names:
        mine = {o.format: o for o in core_outputs if o.name == name}
        if name in extra:
            mine["avif"] = extra[name]
        outputs.extend(mine[f] for f in enc.formats if f in mine)
    return Processed(done.info, outputs, done.palette, timings)


__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "Encoding",
    "ImageInfo",
    "Limits",
    "Palette",
    "PermanentError",
    "Processed",
]
