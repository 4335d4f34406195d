"""Cloud Functions (2nd gen) entry points: one functions-framework target per function.

    functions-framework --source functions/main.py --target worker --port 8082

Thin doors: settings are read once at cold start (a missing setting fails here, naming it),
each HTTP target hands the request, path kept, to a small Flask app built from imgpipe's
blueprints, so routes and error bodies are the same code as `imgpipe serve`."""

from __future__ import annotations

import logging
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent

from imgpipe.gcp import logging as gcp_logging
from imgpipe.gcp.functionapps import dispatch, function_app
from imgpipe.gcp.ingest import handle_finalized
from imgpipe.gcp.wiring import GcpRuntime, gcp_runtime
from imgpipe.settings import Settings

gcp_logging.setup()
log = logging.getLogger("imgpipe.functions")

SETTINGS = Settings.from_env()
if SETTINGS.backend != "gcp":
    raise SystemExit("functions/main.py needs IMGPIPE_BACKEND=gcp")
RUNTIME = gcp_runtime(SETTINGS)


def _runtime() -> GcpRuntime:
    return RUNTIME


_APPS: dict[str, flask.Flask] = {}


def _app(name: str) -> flask.Flask:
    app = _APPS.get(name)
    if app is None:
        app = _APPS[name] = function_app(name, SETTINGS, _runtime)
    return app


@functions_framework.http
def upload(request: flask.Request) -> flask.Response:
    """POST /upload, POST /uploads/signed-url"""
    return dispatch(_app("upload"), request)


@functions_framework.http
def enqueue(request: flask.Request) -> flask.Response:
    """POST /enqueue"""
    return dispatch(_app("enqueue"), request)


@functions_framework.http
def worker(request: flask.Request) -> flask.Response:
    """POST /tasks/process, POST /tasks/event (Cloud Tasks)"""
    return dispatch(_app("worker"), request)


@functions_framework.http
def failure(request: flask.Request) -> flask.Response:
    """POST /tasks/failed (the dead-letter task)"""
    return dispatch(_app("failure"), request)


@functions_framework.http
def status(request: flask.Request) -> flask.Response:
    """The console (GET /), GET /jobs[/{id}], GET /images[/{id}], PATCH|DELETE /images/{id},
    GET /status, GET /metrics, GET /failed, POST /failed/retry, POST /queues/{name}/pause|resume"""
    return dispatch(_app("status"), request)


@functions_framework.http
def sweeper(request: flask.Request) -> flask.Response:
    """Cloud Scheduler: re-enqueue images stuck in processing."""
    return dispatch(_app("sweeper"), request)


@functions_framework.cloud_event
def ingest(event: CloudEvent) -> None:
    """google.cloud.storage.object.v1.finalized from the uploads bucket."""
    data: Any = event.data if isinstance(event.data, dict) else {}
    result = handle_finalized(RUNTIME.services, str(event["type"]), data)
    level = logging.WARNING if result.get("status") in ("failed", "ignored") else logging.INFO
    log.log(
        level,
        f"ingest {data.get('bucket')}/{data.get('name')}: {result['status']}",
        extra={"image_id": result.get("image_id"), "status": result["status"]},
    )
