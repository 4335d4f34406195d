"""The files of a rendered image: renditions, then metadata.json.

Invariants: bytes behind an immutable URL never change (a rendition's file name carries the
configuration fingerprint, so a re-render under another configuration writes new paths and
the old ones become `superseded`, removed after a grace period); metadata.json is the one
mutable file, rewritten last (its presence means the outputs are complete) and served
`no-cache`. A metadata.json that may be served publicly names neither the original's
location nor the uploader's file name."""

from __future__ import annotations

import hashlib
import json

from imgpipe import imaging
from imgpipe.model import ImageRecord, JsonDict
from imgpipe.pipeline.services import Services
from imgpipe.settings import CACHE_CONTROL

METADATA = "metadata.json"


def file_name(svc: Services, name: str, fmt: str, focus: list[float] | None = None) -> str:
    ext = imaging.EXTENSIONS[fmt]
    if not svc.immutable_outputs:
        return f"{name}.{ext}"
    tag = svc.settings.fingerprint
    if name.endswith("-cover") and focus is not None:
        # A cover's crop follows the focal point: a new point is new bytes, so a new path.
        tag = hashlib.sha256(f"{tag}:{focus[0]:.4f},{focus[1]:.4f}".encode()).hexdigest()
    return f"{name}.{tag[:8]}.{ext}"


def write(
    svc: Services, record: ImageRecord, processed: imaging.Processed
) -> tuple[JsonDict, list[str]]:
    """Returns the metadata and the files of the previous render that this one replaced."""
    renditions = []
    for output in processed.outputs:
        name = file_name(svc, output.name, output.format, record.focus)
        svc.blobs.put(
            svc.output_path(record.image_id, name),
            output.data,
            content_type=imaging.CONTENT_TYPES[output.format],
            cache_control=CACHE_CONTROL if svc.immutable_outputs else None,
            overwrite=not svc.immutable_outputs,
        )
        renditions.append(
            {
                "name": output.name,
                "file": name,
                "format": output.format,
                "width": output.width,
                "height": output.height,
                "bytes": len(output.data),
            }
        )
    metadata = build_metadata(svc, record, processed.info, processed.palette, renditions)
    svc.blobs.put(
        svc.output_path(record.image_id, METADATA),
        json.dumps(metadata, indent=2).encode(),
        content_type="application/json",
        cache_control="no-cache",
        overwrite=True,
    )
    previous = {r["file"] for r in (record.result or {}).get("renditions", [])}
    return metadata, sorted(previous - {r["file"] for r in renditions})


def build_metadata(
    svc: Services,
    record: ImageRecord,
    info: imaging.ImageInfo,
    palette: imaging.Palette | None,
    renditions: list[JsonDict],
) -> JsonDict:
    source: JsonDict = {
        "format": info.format,
        "width": info.display_width,
        "height": info.display_height,
        "orientation": info.orientation,
        "bytes": record.source.get("bytes"),
    }
    if not svc.immutable_outputs and "path" in record.source:
        # `imgpipe process` writes into the user's own folder: the path is theirs to see.
        source = {"path": record.source["path"], **source}
    return {
        "image_id": record.image_id,
        "source": source,
        "renditions": renditions,
        "palette": None
        if palette is None
        else {
            "colors": [{"hex": hex_, "share": round(share, 4)} for hex_, share in palette.colors],
            "seed": palette.seed,
            "seed_candidates": list(palette.seed_candidates),
            "thumbhash": palette.thumbhash,
        },
        "srcset": srcset(renditions),
        "fingerprint": svc.settings.fingerprint,
    }


def srcset(renditions: list[JsonDict]) -> JsonDict:
    """Per format, the width renditions (`w640`, …) as a `srcset` value, file names relative
    to metadata.json."""
    by_format: dict[str, list[str]] = {}
    for r in sorted(renditions, key=lambda r: int(r["width"])):
        if str(r["name"]).startswith("w"):
            by_format.setdefault(r["format"], []).append(f"{r['file']} {r['width']}w")
    return {fmt: ", ".join(items) for fmt, items in by_format.items()}


def remove_all(svc: Services, image_id: str) -> int:
    return svc.blobs.delete_prefix(svc.output_path(image_id, ""))


def remove_superseded(svc: Services, record: ImageRecord) -> int:
    """Delete replaced files that the current metadata does not point to."""
    current = {r["file"] for r in (record.result or {}).get("renditions", [])}
    removed = 0
    for name in record.superseded or []:
        if name not in current and svc.blobs.delete(svc.output_path(record.image_id, name)):
            removed += 1
    return removed
