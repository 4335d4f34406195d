"""Rendition specs as users write them in `IMGPIPE_RENDITIONS`: `640`, `1920x1080`,
`1080x1920:cover`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^(\d{1,5})(?:x(\d{1,5}))?(?::(fit|cover))?$")
MAX_SIDE = 16384  # larger than any display; keeps a typo from asking for gigapixel output


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    width: int
    height: int | None = None
    cover: bool = False

    @property
    def text(self) -> str:
        if self.height is None:
            return str(self.width)
        return f"{self.width}x{self.height}" + (":cover" if self.cover else "")

    def as_core(self) -> tuple[int, int | None, bool]:
        return (self.width, self.height, self.cover)


def parse_spec(text: str) -> RenditionSpec:
    match = _SPEC.match(text.strip())
    if match is None:
        raise ValueError(
            f"bad rendition {text!r}: expected WIDTH, WIDTHxHEIGHT or WIDTHxHEIGHT:cover"
        )
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else None
    cover = match.group(3) == "cover"
    if cover and height is None:
        raise ValueError(f"bad rendition {text!r}: cover needs a box (WIDTHxHEIGHT:cover)")
    for side in (width, height):
        if side is not None and not 1 <= side <= MAX_SIDE:
            raise ValueError(f"bad rendition {text!r}: sides must be 1..{MAX_SIDE}")
    return RenditionSpec(width, height, cover)


def parse_specs(text: str) -> tuple[RenditionSpec, ...]:
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("no renditions given")
    specs = tuple(parse_spec(part) for part in parts)
    if len(set(specs)) != len(specs):
        raise ValueError(f"duplicate renditions in {text!r}")
    return specs
