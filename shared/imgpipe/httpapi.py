"""The HTTP doors: one Flask app per function group, all served together by `imgpipe serve`
and, deployed, one group per Cloud Function. Routes parse, call the pipeline, and map
`PipelineError` to PRODUCT.md's JSON body; nothing else happens here."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imgpipe import pipeline, tasks
from imgpipe.auth import ApiAuth, TaskAuth, lower_keys
from imgpipe.errors import (
    FileTooLarge,
    Internal,
    InvalidRequest,
    NotFound,
    PipelineError,
)
from imgpipe.model import is_image_id
from imgpipe.settings import CACHE_CONTROL

log = logging.getLogger("imgpipe.http")

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


def _json_body() -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw:
        return {}
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("body must be a JSON object")
    return payload


def _image_id(image_id: str) -> str:
    if not is_image_id(image_id):
        raise NotFound(f"no image {image_id!r}")
    return image_id


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string")
    return value


def api_blueprint(
    get_svc: Callable[[], pipeline.Services], auth: ApiAuth, *, serve_files: bool
) -> Blueprint:
    bp = Blueprint("api", __name__)

    @bp.before_request
    def _check_key() -> None:
        if request.path.startswith("/files/"):
            return  # renditions are public, immutable content (as in a public bucket)
        auth.check(lower_keys(request.headers.items()))

    @bp.post("/upload")
    def upload() -> Response:
        svc = get_svc()
        file = request.files.get("file")
        if file is None:
            raise InvalidRequest("multipart field 'file' is required")
        data = file.stream.read(svc.settings.max_upload_bytes + 1)
        if len(data) > svc.settings.max_upload_bytes:
            raise FileTooLarge(
                f"file is larger than {svc.settings.max_upload_bytes} bytes; "
                "use POST /uploads/signed-url"
            )
        job_id = request.form.get("job_id") or None
        if job_id is not None and svc.state.get_job(job_id) is None:
            raise NotFound(f"no job {job_id}")
        record, queued = pipeline.submit(
            svc,
            data,
            {"upload": file.filename or "upload"},
            priority=request.form.get("priority") or "high",
            job_id=job_id,
        )
        if queued:
            body = {
                "image_id": record.image_id,
                "status": "queued",
                "status_url": f"/images/{record.image_id}",
            }
            return json_response(body, 202)
        return json_response(pipeline.image_view(svc, record.image_id), 200)

    @bp.post("/uploads/signed-url")
    def signed_url() -> Response:
        raise InvalidRequest("signed upload URLs exist on the gcp backend only")

    @bp.post("/enqueue")
    def enqueue() -> Response:
        svc = get_svc()
        payload = _json_body()
        ids = payload.get("image_ids")
        prefix = _optional_str(payload, "prefix")
        priority = _optional_str(payload, "priority")
        job_name = _optional_str(payload, "job_name")
        reprocess = payload.get("reprocess", False)
        schedule = payload.get("schedule_time")
        if not isinstance(reprocess, bool):
            raise InvalidRequest("'reprocess' must be true or false")
        if schedule is not None and not isinstance(schedule, int | float):
            raise InvalidRequest("'schedule_time' must be epoch seconds")
        schedule_time = float(schedule) if schedule is not None else None
        if ids is not None and prefix is not None:
            raise InvalidRequest("give 'image_ids' or 'prefix', not both")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise InvalidRequest("'image_ids' must be a list of strings")
            job_id, total = pipeline.enqueue_ids(
                svc,
                ids,
                priority=priority,
                schedule_time=schedule_time,
                job_name=job_name,
                reprocess=reprocess,
            )
        elif prefix is not None:
            job_id, total = pipeline.enqueue_prefix(
                svc, prefix, priority=priority, schedule_time=schedule_time, job_name=job_name
            )
        elif reprocess:
            job_id, total = pipeline.enqueue_stale(svc, priority=priority, job_name=job_name)
        else:
            raise InvalidRequest("give 'image_ids', 'prefix' or 'reprocess': true")
        return json_response({"job_id": job_id, "total_tasks": total}, 202)

    @bp.get("/jobs/<job_id>")
    def job(job_id: str) -> Response:
        record = get_svc().state.get_job(job_id)
        if record is None:
            raise NotFound(f"no job {job_id!r}")
        return json_response(record.to_json())

    @bp.get("/images/<image_id>")
    def image(image_id: str) -> Response:
        return json_response(pipeline.image_view(get_svc(), _image_id(image_id)))

    @bp.delete("/images/<image_id>")
    def delete_image(image_id: str) -> Response:
        pipeline.delete_image(get_svc(), _image_id(image_id))
        return json_response({"image_id": image_id, "deleted": True})

    @bp.get("/status")
    def status() -> Response:
        return json_response(pipeline.status_view(get_svc()))

    @bp.get("/failed")
    def failed() -> Response:
        letters = get_svc().state.list_dead_letters(limit=1000)
        return json_response({"failed": [d.to_json() for d in letters]})

    @bp.post("/failed/retry")
    def failed_retry() -> Response:
        payload = _json_body()
        ids = payload.get("image_ids")
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
        ):
            raise InvalidRequest("'image_ids' must be a list of strings")
        job_id, total = pipeline.retry_failed(get_svc(), ids)
        return json_response({"job_id": job_id, "total_tasks": total}, 202)

    @bp.post("/sweep")
    def sweep() -> Response:
        return json_response(pipeline.sweep(get_svc()))

    if serve_files:

        @bp.get("/files/<path:path>")
        def files(path: str) -> Response:
            svc = get_svc()
            data = svc.blobs.get(path)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            response = Response(data, mimetype=mime)
            if not path.endswith("metadata.json"):
                response.headers["Cache-Control"] = CACHE_CONTROL
            return response

    return bp


def tasks_blueprint(get_svc: Callable[[], pipeline.Services], auth: TaskAuth) -> Blueprint:
    bp = Blueprint("tasks", __name__)

    @bp.before_request
    def _check_task_auth() -> None:
        auth.check(lower_keys(request.headers.items()))

    @bp.post("/tasks/process")
    def process() -> Response:
        status, body = tasks.process(
            get_svc(), lower_keys(request.headers.items()), request.get_data(cache=False)
        )
        return json_response(body, status)

    @bp.post("/tasks/failed")
    def failed() -> Response:
        status, body = tasks.record_failure(get_svc(), request.get_data(cache=False))
        return json_response(body, status)

    return bp


def create_app(
    get_svc: Callable[[], pipeline.Services],
    api_auth: ApiAuth,
    task_auth: TaskAuth,
    *,
    max_upload_bytes: int,
    serve_files: bool = True,
) -> Flask:
    app = Flask("imgpipe")
    # Room for the multipart envelope around a file at the byte limit.
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + 1024 * 1024
    install_error_handlers(app)
    app.register_blueprint(api_blueprint(get_svc, api_auth, serve_files=serve_files))
    app.register_blueprint(tasks_blueprint(get_svc, task_auth))
    return app
