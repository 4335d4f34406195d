"""imgcore as the pipeline calls it: HEIF and AVIF pixels decoded outside the core by
`imgpipe.foreign` (libheif, libavif) and handed to it, every other format decoded inside."""

from __future__ import annotations

from typing import Any

from imgpipe import _imgcore, foreign


def _decoded(data: bytes, max_pixels: int) -> foreign.Pixels | None:
    if not foreign.is_container(data):
        return None
    info = _imgcore.probe(data, max_pixels=max_pixels)
    if info.format not in foreign.FORMATS:
        return None
    return foreign.decode(data, info.format)


def process(
    data: bytes, renditions: list[tuple[int, int | None, bool]], **kw: Any
) -> _imgcore.Processed:
    px = _decoded(data, kw.get("max_pixels", 100_000_000))
    decoded = None if px is None else px.as_core()
    return _imgcore.process(data, renditions, decoded=decoded, **kw)


def render_raw(
    data: bytes, renditions: list[tuple[int, int | None, bool]], **kw: Any
) -> list[_imgcore.RawRendition]:
    px = _decoded(data, kw.get("max_pixels", 100_000_000))
    decoded = None if px is None else px.as_core()
    return _imgcore.render_raw(data, renditions, decoded=decoded, **kw)


def palette_thumbnail(data: bytes, **kw: Any) -> _imgcore.RawRendition:
    px = _decoded(data, kw.get("max_pixels", 100_000_000))
    decoded = None if px is None else px.as_core()
    return _imgcore.palette_thumbnail(data, decoded=decoded, **kw)


def attention_window(
    data: bytes, width: int, height: int, **kw: Any
) -> tuple[float, float, float, float]:
    px = _decoded(data, kw.get("max_pixels", 100_000_000))
    decoded = None if px is None else px.as_core()
    return _imgcore.attention_window(data, width, height, decoded=decoded, **kw)
