"""The finalize trigger: an object written to the uploads bucket becomes an image (register +
enqueue), exactly as an upload over HTTP does."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from imgpipe import imaging, pipeline
from imgpipe.errors import InvalidRequest, PermanentError
from imgpipe.model import DeadLetter, image_id_for, object_letter_key

FINALIZED = "google.cloud.storage.object.v1.finalized"
log = logging.getLogger("imgpipe.ingest")


def handle_finalized(
    svc: pipeline.Services, event_type: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """Returns what happened (for the log). Permanent errors are recorded as dead letters and
    acknowledged (a redelivery would fail the same way); transient errors raise, so Eventarc
    redelivers the event."""
    if event_type != FINALIZED:
        raise InvalidRequest(f"expected a {FINALIZED} event, got {event_type!r}")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not isinstance(name, str) or not name:
        raise InvalidRequest("the event names no bucket and object")
    expected = svc.settings.upload_bucket
    if bucket != expected or svc.uploads is None:
        return {"status": "ignored", "reason": f"bucket {bucket} is not {expected}"}
    try:
        event_size = int(data.get("size") or 0)
    except (TypeError, ValueError):
        raise InvalidRequest("the event's object size is not a number") from None
    if name.endswith("/") or event_size == 0:
        return {"status": "ignored", "reason": "empty object or folder marker"}
    data_bytes: bytes | None = None
    try:
        # The size from the event, then from the object's metadata, before any byte is read:
        # a multi-GB object is refused (and acknowledged), never downloaded.
        imaging.check_size(event_size, svc.limits)
        size = svc.uploads.size(name)
        if size is None:
            return {"status": "ignored", "reason": "the object is gone"}
        imaging.check_size(size, svc.limits)
        data_bytes = svc.uploads.get(name, max_bytes=svc.limits.max_bytes)
        record, queued = pipeline.submit(svc, data_bytes, {"object": name}, priority="high")
    except PermanentError as exc:
        image_id = image_id_for(data_bytes) if data_bytes is not None else object_letter_key(name)
        generation = str(data.get("generation") or "")
        key = hashlib.sha256(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:24]
        now = svc.clock.now()
        svc.state.record_dead_letter(
            DeadLetter(
                image_id=image_id,
                task_name=f"ingest-{key}",
                error_code=exc.code,
                error_message=f"{name}: {exc.message}",
                attempts=1,
                first_attempt_at=now,
                last_attempt_at=now,
                source_object=name,
            )
        )
        return {"status": "failed", "image_id": image_id, "code": exc.code}
    return {
        "status": "queued" if queued else record.state.value,
        "image_id": record.image_id,
        "object": name,
    }
