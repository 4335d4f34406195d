"""Opaque page cursors: the sort key of the last item of a page, as URL-safe text."""

from __future__ import annotations

import base64
import json
import math

from imgpipe.errors import InvalidRequest


def encode(created_at: float, key: str) -> str:
    raw = json.dumps([created_at, key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, key = json.loads(raw)
        value = float(created_at)
    except (ValueError, TypeError):
        raise InvalidRequest("'cursor' is not one this server gave") from None
    if not isinstance(key, str) or not math.isfinite(value) or len(cursor) > 400:
        raise InvalidRequest("'cursor' is not one this server gave")
    return value, key
