"""Structured JSON logs on stdout, one object a line, in the shape Cloud Logging parses:
`severity`, `message`, and imgpipe's fields (`image_id`, `task`, `attempt`, ...) as top-level
keys of `jsonPayload`. Pass fields with `log.info("...", extra={"image_id": ...})`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from typing import Any, TextIO

FIELDS = (
    "image_id",
    "object",
    "task",
    "attempt",
    "queue",
    "job_id",
    "status",
    "code",
    "http_status",
)
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            # Cloud Error Reporting picks up a stack trace in the message.
            entry["message"] += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, default=str)


def setup(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Route the root logger to one JSON handler on stdout (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_imgpipe_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._imgpipe_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
