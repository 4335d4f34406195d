"""What the API shows of an image and of the system, and deleting an image.

Invariant: a delete wins against a worker that is rendering the image. The record becomes a
`deleted` tombstone *before* any file is removed; a worker whose finishing compare-and-set
then fails removes what it wrote, and the sweeper removes the outputs once more before the
tombstone goes. No rendition reappears."""

from __future__ import annotations

from imgpipe.errors import Conflict, NotFound
from imgpipe.model import JsonDict, State
from imgpipe.pipeline import outputs
from imgpipe.pipeline.services import ORIGINALS, Services

_SOURCE_LOCATION = ("upload", "object", "path", "original")


def image_view(svc: Services, image_id: str) -> JsonDict:
    record = svc.state.get_image(image_id)
    if record is None or record.state is State.DELETED:
        raise NotFound(f"no image {image_id}")
    view: JsonDict = {
        "image_id": record.image_id,
        "status": record.state.value,
        "attempts": record.attempts,
        "next_attempt_at": record.next_attempt_at,
        "error": None
        if record.error_code is None
        else {"code": record.error_code, "message": record.error_message},
        "fingerprint": record.fingerprint,
        "stale": record.fingerprint != svc.settings.fingerprint,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "source": {k: record.source[k] for k in _SOURCE_LOCATION if k in record.source},
        "renditions": [],
        "palette": None,
    }
    if record.result:
        # The authenticated view names where the original is and what the uploader called it;
        # the public metadata.json does not.
        view["source"] = {**(record.result.get("source") or {}), **view["source"]}
        view["renditions"] = [
            {**r, "url": svc.blobs.url(svc.output_path(record.image_id, r["file"]))}
            for r in record.result.get("renditions", [])
        ]
        view["palette"] = record.result.get("palette")
        view["srcset"] = record.result.get("srcset")
    return view


def delete_image(svc: Services, image_id: str) -> None:
    """Idempotent while the tombstone lasts: a second DELETE removes again what a late worker
    may have written."""
    for _ in range(5):
        record = svc.state.get_image(image_id)
        if record is None:
            raise NotFound(f"no image {image_id}")
        if record.state is State.DELETED:
            break
        gone = svc.state.transition(
            image_id,
            [record.state],
            {"state": State.DELETED, "updated_at": svc.clock.now()},
            match={"generation": record.generation, "started_at": record.started_at},
        )
        if gone is not None:
            break
    else:
        raise Conflict(f"image {image_id} keeps changing, try again")
    outputs.remove_all(svc, image_id)
    if "path" not in record.source:
        svc.originals.delete_prefix(ORIGINALS + image_id)
    svc.state.remove_image_letters(image_id)


def status_view(svc: Services) -> JsonDict:
    queues = [
        {"name": q.name, "state": q.state, "depth": q.depth, "in_flight": q.in_flight}
        for q in svc.queue.stats()
    ]
    return {
        "queues": queues,
        "images": svc.state.count_by_state(),
        "recent_failures": [d.to_json() for d in svc.state.list_dead_letters(limit=10)],
    }
