"""What the API shows of an image and of the system, and deleting an image.

Invariant: a delete wins against a worker that is rendering the image. The record becomes a
`deleted` tombstone *before* any file is removed; a worker whose finishing compare-and-set
then fails removes what it wrote, and the sweeper removes the outputs once more before the
tombstone goes. No rendition reappears."""

from __future__ import annotations

from imgpipe.errors import Conflict, InvalidRequest, NotFound
from imgpipe.model import ImageRecord, JsonDict, State
from imgpipe.pipeline import events, outputs
from imgpipe.pipeline.intake import enqueue_image, requeue
from imgpipe.pipeline.services import ORIGINALS, Services, queue_for

_SOURCE_LOCATION = ("upload", "object", "path", "original")


THROUGHPUT_WINDOW = 300.0


def image_view(svc: Services, image_id: str) -> JsonDict:
    record = svc.state.get_image(image_id)
    if record is None or record.state is State.DELETED:
        raise NotFound(f"no image {image_id}")
    return record_view(svc, record)


def list_images(
    svc: Services, *, state: State | None, limit: int, cursor: str | None
) -> tuple[list[JsonDict], str | None]:
    records, next_cursor = svc.state.page_images(state=state, limit=limit, cursor=cursor)
    return [record_view(svc, r) for r in records], next_cursor


def _timeline(record: ImageRecord) -> list[JsonDict]:
    steps: list[JsonDict] = [{"state": "queued", "at": record.created_at}]
    if record.started_at is not None:
        steps.append({"state": "processing", "at": record.started_at, "attempt": record.attempts})
    if record.state is not State.PROCESSING and record.updated_at > record.created_at:
        steps.append({"state": record.state.value, "at": record.updated_at})
    return steps


def record_view(svc: Services, record: ImageRecord) -> JsonDict:
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
        "focus": record.focus,
        "timeline": _timeline(record),
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
        gone: ImageRecord | None = svc.state.transition(
            image_id,
            [record.state],
            {"state": State.DELETED, "updated_at": svc.clock.now()},
            match={"generation": record.generation, "started_at": record.started_at},
        )
        if gone is not None:
            record = gone
            break
    else:
        raise Conflict(f"image {image_id} keeps changing, try again")
    events.deleted_event(svc, record)  # again on a second DELETE: a lost emit goes out
    outputs.remove_all(svc, image_id)
    if "path" not in record.source:
        svc.originals.delete_prefix(ORIGINALS + image_id)
    svc.state.remove_image_letters(image_id)


def status_view(svc: Services) -> JsonDict:
    queues = [
        {"name": q.name, "state": q.state, "depth": q.depth, "in_flight": q.in_flight}
        for q in svc.queue.stats()
    ]
    done = svc.state.count_done_since(svc.clock.now() - THROUGHPUT_WINDOW)
    return {
        "queues": queues,
        "images": svc.state.count_by_state(),
        "recent_failures": [d.to_json() for d in svc.state.list_dead_letters(limit=10)],
        "throughput": {
            "done_last_5_min": done,
            "per_minute": round(done * 60.0 / THROUGHPUT_WINDOW, 2),
        },
    }


def check_focus(value: object) -> list[float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(0.0 <= float(v) <= 1.0 for v in value)
    ):
        raise InvalidRequest("'focus' must be [x, y], fractions 0..1 of width and height")
    return [float(value[0]), float(value[1])]


def set_focus(svc: Services, image_id: str, focus: list[float] | None) -> ImageRecord:
    """Store the focal point and render the image again (its cover renditions change)."""
    record = svc.state.get_image(image_id)
    if record is None or record.state is State.DELETED:
        raise NotFound(f"no image {image_id}")
    if record.state is State.PROCESSING:
        raise Conflict(f"image {image_id} is being rendered: try again in a moment")
    stored = svc.state.transition(
        image_id, [record.state], {"focus": focus}, match={"generation": record.generation}
    )
    if stored is None:
        raise Conflict(f"image {image_id} changed meanwhile: try again")
    if stored.state is State.QUEUED:
        return stored  # its coming render uses the new focus
    moved = requeue(svc, stored)
    if moved is None:
        raise Conflict(f"image {image_id} changed meanwhile: try again")
    enqueue_image(svc, moved, queue=queue_for(svc, "high"))
    return moved


_FORMAT_ORDER = ("avif", "webp", "jpeg")
_MIME = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg"}


def accepted_formats(accept: str) -> list[str]:
    """Formats the `Accept` header allows, best first (avif > webp > jpeg); JPEG is always
    acceptable (every client shows it), whatever the header says."""
    allowed: set[str] = {"jpeg"}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        for fmt, mime in _MIME.items():
            if media in (mime, "image/*", "*/*") and (fmt == "jpeg" or media == mime):
                allowed.add(fmt)
    return [f for f in _FORMAT_ORDER if f in allowed]


def best_rendition(svc: Services, image_id: str, width: int, accept: str) -> str:
    """The URL of the smallest full-frame (`wN`) rendition at least `width` wide (else the
    widest) in the best format `accept` allows."""
    record = svc.state.get_image(image_id)
    if record is None or record.state is State.DELETED:
        raise NotFound(f"no image {image_id}")
    if record.result is None:
        raise NotFound(f"image {image_id} has no renditions yet")
    candidates = [r for r in record.result.get("renditions", []) if str(r["name"]).startswith("w")]
    for fmt in accepted_formats(accept):
        widths = sorted((r for r in candidates if r["format"] == fmt), key=lambda r: r["width"])
        if widths:
            chosen = next((r for r in widths if r["width"] >= width), widths[-1])
            return svc.blobs.url(svc.output_path(image_id, chosen["file"]))
    raise NotFound(f"image {image_id} has no width renditions")
