"""The Cloud Functions' Flask apps: each function gets a small app made of imgpipe.http's
blueprints (the same routes and error bodies as `imgpipe serve`), limited to the paths of its
own rows in PRODUCT.md, plus the GCP-only routes: POST /uploads/signed-url and the sweeper."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Request, Response, g, request

from imgpipe import pipeline
from imgpipe.auth import ApiAuth, TaskAuth, lower_keys
from imgpipe.errors import InvalidRequest, NotFound
from imgpipe.gcp.wiring import GcpRuntime, oidc_verifier
from imgpipe.http.api import api_blueprint
from imgpipe.http.common import install_error_handlers, json_body, json_response, optional_str
from imgpipe.http.console import console_blueprint
from imgpipe.http.taskroutes import tasks_blueprint
from imgpipe.settings import Settings

log = logging.getLogger("imgpipe.functions")

# Function -> the Flask endpoints (blueprint.view) it serves; everything else is a 404.
ENDPOINTS: dict[str, frozenset[str]] = {
    "upload": frozenset({"api.upload", "api.signed_url"}),
    "enqueue": frozenset({"api.enqueue"}),
    "worker": frozenset({"tasks.process", "tasks.event"}),
    "failure": frozenset({"tasks.failed"}),
    "status": frozenset(
        {
            "api.job",
            "api.jobs",
            "api.image",
            "api.images",
            "api.best",
            "api.patch_image",
            "api.delete_image",
            "api.status",
            "api.failed",
            "api.failed_retry",
            "api.queue_action",
            "api.metrics_text",
            "console.index",
            "console.asset",
        }
    ),
    "sweeper": frozenset({"gcp.sweep"}),
}
_API = {"upload", "enqueue", "status"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
UPLOAD_TYPES = re.compile(r"(image/[A-Za-z0-9.+-]+|application/octet-stream)")


def task_auth(settings: Settings, own_url: str | None) -> TaskAuth:
    if settings.task_auth == "oidc":
        return TaskAuth("oidc", verify_oidc=oidc_verifier(settings, own_url))
    return TaskAuth("secret", secret=settings.task_secret)


def signed_url_view(runtime: Callable[[], GcpRuntime]) -> Callable[[], Response]:
    def signed_url() -> Response:
        uploads = runtime().uploads
        if uploads is None:
            raise InvalidRequest("signed upload URLs need IMGPIPE_UPLOAD_BUCKET")
        payload = json_body()
        filename = optional_str(payload, "filename") or "upload"
        content_type = optional_str(payload, "content_type") or "application/octet-stream"
        if not UPLOAD_TYPES.fullmatch(content_type):
            raise InvalidRequest("'content_type' must be image/* or application/octet-stream")
        safe = _SAFE_NAME.sub("_", filename.rsplit("/", 1)[-1]).strip("._")[:200] or "upload"
        max_bytes = runtime().services.settings.max_object_bytes
        signed = uploads.signed_upload(f"{uuid.uuid4().hex}/{safe}", content_type, max_bytes)
        body = {
            "url": signed.url,
            "method": "PUT",
            "object": signed.object,
            "headers": {"Content-Type": content_type, **signed.headers},
            "max_bytes": max_bytes,
            "expires_at": signed.expires_at,
        }
        return json_response(body, 200)

    return signed_url


def sweeper_blueprint(get_svc: Callable[[], pipeline.Services], auth: TaskAuth) -> Blueprint:
    """Cloud Scheduler calls it with an OIDC token (or the task secret), like a task."""
    bp = Blueprint("gcp", __name__)

    @bp.before_request
    def _check() -> None:
        auth.check(lower_keys(request.headers.items()))

    @bp.route("/", methods=["GET", "POST"], endpoint="sweep")
    @bp.route("/sweep", methods=["GET", "POST"], endpoint="sweep")
    def sweep() -> Response:
        result = pipeline.sweep(get_svc())
        log.info("sweep finished", extra={"status": json.dumps(result)})
        return json_response(result)

    return bp


def _log_task(response: Response) -> Response:
    headers = lower_keys(request.headers.items())
    try:
        attempt = int(headers.get("x-cloudtasks-taskretrycount") or 0) + 1
    except ValueError:
        attempt = None
    body = response.get_json(silent=True) if response.is_json else None
    body = body if isinstance(body, dict) else {}
    task: Any = {}
    if g.get("task_authenticated"):
        # The body, cached once the task's auth passed: who the task was for. An
        # unauthenticated caller's body is never read, let alone logged.
        try:
            task = json.loads(getattr(request, "_cached_data", None) or b"null")
        except (ValueError, RecursionError):
            task = {}
    task = task if isinstance(task, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    status = response.status_code
    level = logging.INFO if status < 300 and error is None else logging.WARNING
    if status >= 500 and status != 503:
        level = logging.ERROR
    log.log(
        level,
        f"{request.method} {request.path} -> {status}",
        extra={
            "image_id": body.get("image_id") or task.get("image_id"),
            "object": task.get("object"),
            "job_id": task.get("job_id"),
            "task": headers.get("x-cloudtasks-taskname"),
            "queue": headers.get("x-cloudtasks-queuename"),
            "attempt": attempt,
            "status": body.get("status"),
            "code": error.get("code") if error else None,
            "http_status": status,
        },
    )
    return response


def function_app(name: str, settings: Settings, runtime: Callable[[], GcpRuntime]) -> Flask:
    if name not in ENDPOINTS:
        raise ValueError(f"unknown function {name!r}")
    allowed = ENDPOINTS[name]

    def get_svc() -> pipeline.Services:
        return runtime().services

    app = Flask(f"imgpipe-{name}")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 1024 * 1024
    install_error_handlers(app)

    @app.before_request
    def _only_own_paths() -> None:
        rule = request.url_rule
        if rule is not None and rule.endpoint not in allowed:
            raise NotFound(f"{request.method} {request.path} is not served by '{name}'")

    if name in _API:
        # Each instance counts only its own tasks: the status function serves the gauges of
        # stored state (the log-based metrics from setup cover the rest).
        app.register_blueprint(
            api_blueprint(
                get_svc, ApiAuth(settings.api_token), serve_files=False, process_counters=False
            )
        )
        if name == "status":
            app.register_blueprint(console_blueprint())
        app.view_functions["api.signed_url"] = signed_url_view(runtime)
    elif name in ("worker", "failure"):
        own = settings.worker_url if name == "worker" else settings.failure_url
        app.register_blueprint(tasks_blueprint(get_svc, task_auth(settings, own)))
        app.after_request(_log_task)
    else:
        app.register_blueprint(sweeper_blueprint(get_svc, task_auth(settings, settings.worker_url)))
    return app


def dispatch(app: Flask, incoming: Request) -> Response:
    """Serve a functions-framework request with one of these apps, path kept."""
    with app.request_context(incoming.environ):
        response: Response = app.full_dispatch_request()
    return response
