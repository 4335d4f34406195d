"""The app factory of `imgpipe serve`: every door on one port (the Cloud Functions build one
app per function from the same blueprints, in `imgpipe.gcp.functions`)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from imgpipe import pipeline
from imgpipe.auth import ApiAuth, TaskAuth
from imgpipe.http.api import api_blueprint
from imgpipe.http.common import install_error_handlers
from imgpipe.http.console import console_blueprint
from imgpipe.http.taskroutes import tasks_blueprint


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
    app.register_blueprint(console_blueprint())
    return app
