"""The operator's console: one page app served by imgpipe itself from the package's files
(no CDN, no build step). The page and its assets are public; every call it makes to the API
carries the key the operator typed, kept in the browser's session storage."""

from __future__ import annotations

import mimetypes
from importlib import resources

from flask import Blueprint, Response

from imgpipe.errors import NotFound

_ASSETS = resources.files("imgpipe.http") / "console"
_SECURITY = {
    # Only our own files: nothing loads from elsewhere, nothing frames the page.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob: https: http:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> Response:
    if "/" in name or name.startswith(".") or "\x00" in name:
        raise NotFound("no such file")
    path = _ASSETS / name
    if not path.is_file():
        raise NotFound("no such file")
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(path.read_bytes(), mimetype=mime)
    response.headers.update(_SECURITY)
    response.headers["Cache-Control"] = "no-cache"
    return response


def console_blueprint() -> Blueprint:
    bp = Blueprint("console", __name__)

    @bp.get("/")
    def index() -> Response:
        return _asset("index.html")

    @bp.get("/console/<name>")
    def asset(name: str) -> Response:
        return _asset(name)

    return bp
