"""What every HTTP door shares: the JSON error body of PRODUCT.md (one mapping of
`PipelineError`, installed once per app), JSON answers, and the parsing of request bodies."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imgpipe import safejson
from imgpipe.errors import Internal, InvalidRequest, NotFound, PipelineError
from imgpipe.model import is_image_id

log = logging.getLogger("imgpipe.http")
MAX_TASK_BODY = 1024 * 1024

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "file_too_large",
    415: "unsupported_format",
    429: "rate_limited",
}


def error_response(code: str, message: str, status: int) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, mimetype="application/json")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(PipelineError)
    def _pipeline(exc: PipelineError) -> Response:
        return error_response(exc.code, exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge):
            return error_response("file_too_large", "request body is too large", 413)
        return error_response(_HTTP_CODES.get(status, "internal"), exc.description or "", status)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(Internal.code, "internal error", 500)


def json_body() -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw:
        return {}
    return safejson.loads_object(raw)


def image_id_arg(image_id: str) -> str:
    if not is_image_id(image_id):
        raise NotFound("no such image")
    return image_id


def optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string")
    if value is not None and "\x00" in value:
        raise InvalidRequest(f"'{key}' must not contain NUL")
    return value


def optional_bool(payload: dict[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false")
    return value
