"""Rebuild or repair the state store from the `metadata.json` files of the outputs store
(after a lost database, or a move from local to Google Cloud), and the same check for one
image whose outputs are complete but whose state is behind (the sweeper's)."""

from __future__ import annotations

import json
from typing import Any

from imgpipe.errors import NotFound, PipelineError
from imgpipe.model import ImageRecord, JsonDict, State, is_image_id
from imgpipe.pipeline.outputs import METADATA
from imgpipe.pipeline.services import ORIGINALS, Services


def read_metadata(svc: Services, image_id: str) -> JsonDict | None:
    try:
        raw = svc.blobs.get(svc.output_path(image_id, METADATA), max_bytes=4 * 1024 * 1024)
        meta = json.loads(raw)
    except NotFound:
        return None
    except (ValueError, UnicodeDecodeError, RecursionError, PipelineError):
        return None
    if not isinstance(meta, dict) or meta.get("image_id") != image_id:
        return None
    if not isinstance(meta.get("renditions"), list) or not isinstance(meta.get("fingerprint"), str):
        return None
    return meta


def finish_from_metadata(svc: Services, record: ImageRecord) -> bool:
    """A worker that wrote metadata.json for this configuration and died before recording it
    finished the work: record it, instead of rendering again."""
    meta = read_metadata(svc, record.image_id)
    if meta is None or meta["fingerprint"] != record.fingerprint:
        return False
    if not all(
        svc.blobs.exists(svc.output_path(record.image_id, str(r.get("file"))))
        for r in meta["renditions"]
    ):
        return False
    done = svc.state.transition(
        record.image_id,
        [record.state],
        {"state": State.DONE, "result": meta, "updated_at": svc.clock.now()},
        match={"generation": record.generation, "started_at": record.started_at},
    )
    return done is not None


def reconcile(svc: Services) -> dict[str, int]:
    counts = {"restored": 0, "repaired": 0, "unchanged": 0, "skipped": 0}
    for blob in svc.blobs.list(svc.outputs_prefix):
        rest = blob.path[len(svc.outputs_prefix) :]
        image_id, _, name = rest.partition("/")
        if name != METADATA or not is_image_id(image_id):
            continue
        counts[_reconcile_one(svc, image_id)] += 1
    return counts


def _reconcile_one(svc: Services, image_id: str) -> str:
    meta = read_metadata(svc, image_id)
    if meta is None:
        return "skipped"
    record = svc.state.get_image(image_id)
    now = svc.clock.now()
    if record is None:
        source: dict[str, Any] = {
            "format": (meta.get("source") or {}).get("format"),
            "bytes": (meta.get("source") or {}).get("bytes"),
        }
        original = ORIGINALS + image_id
        if svc.originals.exists(original):
            source["original"] = original
        _, created = svc.state.insert_image(
            ImageRecord(
                image_id=image_id,
                state=State.DONE,
                source=source,
                fingerprint=meta["fingerprint"],
                created_at=now,
                updated_at=now,
                result=meta,
            )
        )
        return "restored" if created else "unchanged"
    if record.state is State.DELETED:
        return "skipped"
    if record.state is State.DONE and record.fingerprint == meta["fingerprint"]:
        return "unchanged"
    if record.state is State.DONE or meta["fingerprint"] != record.fingerprint:
        return "skipped"  # rendered under another configuration: reprocess decides
    return "repaired" if finish_from_metadata(svc, record) else "skipped"
