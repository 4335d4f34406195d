"""JSON from outside, parsed so that malformed input of any kind is an `InvalidRequest` (400),
never a crash: nesting deeper than MAX_DEPTH is refused before parsing (the parser recurses),
and so are `NaN` / `Infinity` (not JSON, though Python's parser takes them)."""

from __future__ import annotations

import json
from typing import Any

from imgpipe.errors import InvalidRequest

MAX_DEPTH = 32


def _too_deep(text: str) -> bool:
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a JSON number")


def loads(raw: bytes | str, what: str = "body") -> Any:
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidRequest(f"{what} is not UTF-8") from None
    if _too_deep(text):
        raise InvalidRequest(f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise InvalidRequest(f"{what} is not valid JSON") from None


def loads_object(raw: bytes | str, what: str = "body") -> dict[str, Any]:
    payload = loads(raw, what)
    if not isinstance(payload, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return payload
