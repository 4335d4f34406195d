"""Structured logs: one JSON object a line with severity, message and imgpipe's fields."""

from __future__ import annotations

import io
import json
import logging

from imgpipe.gcp import logging as gcp_logging


def test_json_lines_cloud_logging_parses() -> None:
    stream = io.StringIO()
    gcp_logging.setup(stream)
    gcp_logging.setup(stream)  # idempotent: still one handler
    log = logging.getLogger("imgpipe.test")
    log.warning("task failed", extra={"image_id": "ab" * 16, "task": "t-1", "attempt": 2})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("crashed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["severity"] == "WARNING"
    assert first["message"] == "task failed"
    assert (first["image_id"], first["task"], first["attempt"]) == ("ab" * 16, "t-1", 2)
    assert first["time"].endswith("+00:00")
    assert second["severity"] == "ERROR"
    assert "RuntimeError: boom" in second["message"]
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "_imgpipe_json", False):
            logging.getLogger().removeHandler(handler)
