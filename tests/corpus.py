"""The shared image corpus and its manifest, for every test suite."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    configured = os.environ.get("IMGPIPE_CORPUS")
    path = Path(configured) if configured else ROOT.parent / "shared" / "corpus"
    if not (path / "MANIFEST.tsv").is_file():
        raise RuntimeError(f"image corpus not found at {path} (set IMGPIPE_CORPUS)")
    return path


@dataclass(frozen=True)
class Entry:
    file: str
    format: str
    expect: str
    codes: tuple[str, ...]
    orientation: int | None

    @property
    def path(self) -> Path:
        return corpus_dir() / self.file


def manifest() -> list[Entry]:
    with (corpus_dir() / "MANIFEST.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        Entry(
            file=row["file"],
            format=row["format"],
            expect=row["expect"],
            codes=tuple(filter(None, row["expect_code"].split("|"))),
            orientation=int(row["exif_orientation"]) if row["exif_orientation"] else None,
        )
        for row in rows
    ]
