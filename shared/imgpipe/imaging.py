"""Thin typed wrapper over the Rust core; the only importer of `imgpipe._imgcore`.
Byte limits are checked here, before any byte reaches the core; pixel limits inside it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from imgpipe import _imgcore
from imgpipe.errors import FileTooLarge, PermanentError, permanent_from_code
from imgpipe.renditions import RenditionSpec
from imgpipe.settings import (
    JPEG_QUALITY,
    OUTPUT_FORMATS,
    WEBP_METHOD,
    WEBP_QUALITY,
    Settings,
)

T = TypeVar("T")

ImageInfo = _imgcore.ImageInfo
Processed = _imgcore.Processed
Palette = _imgcore.Palette

CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp"}


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


def process(
    data: bytes,
    specs: Sequence[RenditionSpec],
    limits: Limits,
    *,
    threads: int = 1,
    focus: Sequence[float] | None = None,
) -> Processed:
    check_size(len(data), limits)
    core_specs = [spec.as_core() for spec in specs]
    at = None if focus is None else (float(focus[0]), float(focus[1]))
    return _core(
        lambda: _imgcore.process(
            data,
            core_specs,
            palette=True,
            max_pixels=limits.max_pixels,
            jpeg_quality=JPEG_QUALITY,
            webp_quality=WEBP_QUALITY,
            webp_method=WEBP_METHOD,
            formats=list(OUTPUT_FORMATS),
            threads=threads,
            focus=at,
        )
    )


__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "ImageInfo",
    "Limits",
    "Palette",
    "PermanentError",
    "Processed",
]
