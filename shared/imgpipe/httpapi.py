"""The HTTP doors: one Flask app per function group, all served together by `imgpipe serve`
and, deployed, one group per Cloud Function. Routes parse, call the pipeline, and map
`PipelineError` to PRODUCT.md's JSON body; nothing else happens here."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imgpipe import pipeline, safejson, tasks
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


def _image_id(image_id: str) -> str:
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


def _optional_bool(payload: dict[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false")
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
        job_id = pipeline.check_job_id(request.form.get("job_id") or None)
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
        payload = json_body()
        ids = payload.get("image_ids")
        prefix = optional_str(payload, "prefix")
        priority = optional_str(payload, "priority")
        job_name = optional_str(payload, "job_name")
        reprocess = _optional_bool(payload, "reprocess")
        everything = _optional_bool(payload, "all")
        # Checked before anything is written: a refused request changes nothing.
        schedule_time = pipeline.check_schedule(svc, payload.get("schedule_time"))
        pipeline.queue_for(svc, priority)
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
        elif prefix is not None or everything:
            job_id = pipeline.enqueue_prefix(
                svc,
                prefix or "",
                everything=everything,
                priority=priority,
                schedule_time=schedule_time,
                job_name=job_name,
            )
            # The listing is walked by tasks: the count grows on GET /jobs/{id}.
            body = {"job_id": job_id, "total_tasks": None, "status_url": f"/jobs/{job_id}"}
            return json_response(body, 202)
        elif reprocess:
            job_id, total = pipeline.enqueue_stale(svc, priority=priority, job_name=job_name)
        else:
            raise InvalidRequest("give 'image_ids', 'prefix' or 'reprocess': true")
        return json_response({"job_id": job_id, "total_tasks": total}, 202)

    @bp.get("/jobs/<job_id>")
    def job(job_id: str) -> Response:
        try:
            pipeline.check_job_id(job_id)
        except InvalidRequest:
            raise NotFound("no such job") from None
        record = get_svc().state.get_job(job_id)
        if record is None:
            raise NotFound(f"no job {job_id}")
        return json_response(record.to_json())

    @bp.get("/images/<image_id>")
    def image(image_id: str) -> Response:
        return json_response(pipeline.image_view(get_svc(), _image_id(image_id)))

    @bp.delete("/images/<image_id>")
    def delete_image(image_id: str) -> Response:
        pipeline.delete_image(get_svc(), _image_id(image_id))  # idempotent
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
        payload = json_body()
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
            if "\x00" in path:
                raise InvalidRequest("bad file path")
            # Renditions only: originals live in a store of their own, never served here.
            if not path.startswith(svc.outputs_prefix) or path.endswith("/"):
                raise NotFound("no such file")
            data = svc.blobs.get(path)
            mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
            response = Response(data, mimetype=mime)
            response.headers["Cache-Control"] = (
                "no-cache" if path.endswith("metadata.json") else CACHE_CONTROL
            )
            return response

    return bp


def tasks_blueprint(get_svc: Callable[[], pipeline.Services], auth: TaskAuth) -> Blueprint:
    bp = Blueprint("tasks", __name__)

    @bp.before_request
    def _check_task_auth() -> None:
        # Nothing of the body is read (or logged) before the caller is known to be the queue.
        auth.check(lower_keys(request.headers.items()))
        g.task_authenticated = True
        if (request.content_length or 0) <= MAX_TASK_BODY:
            request.get_data(cache=True)  # small references: kept for the request's log line

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
