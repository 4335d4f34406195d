"""`imgpipe serve`: every endpoint on one port, the local queue dispatching to it over real
HTTP, and the sweeper on a timer."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from werkzeug.serving import make_server

from imgpipe import pipeline
from imgpipe.auth import ApiAuth, TaskAuth
from imgpipe.http import create_app
from imgpipe.http.localqueue import http_dispatcher
from imgpipe.settings import Settings
from imgpipe.wiring import local_runtime

SWEEP_EVERY = 60.0
log = logging.getLogger("imgpipe.serve")


def serve(settings: Settings, *, host: str, port: int, no_auth: bool) -> NoReturn:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    token = None if no_auth else settings.api_token or secrets.token_urlsafe(24)
    task_secret = settings.task_secret or secrets.token_urlsafe(24)

    holder: dict[str, pipeline.Services] = {}
    app = create_app(
        lambda: holder["svc"],
        ApiAuth(token),
        TaskAuth("secret", task_secret),
        max_upload_bytes=settings.max_upload_bytes,
    )
    server = make_server(host, port, app, threaded=True)
    port = server.server_port
    base = f"http://{host}:{port}"
    runtime = local_runtime(settings, url_prefix=f"{base}/files")
    holder["svc"] = runtime.services
    dispatcher = http_dispatcher(runtime, base, task_secret)

    stop = threading.Event()

    def sweeper() -> None:
        while not stop.wait(SWEEP_EVERY):
            try:
                pipeline.sweep(runtime.services)
            except Exception:
                log.exception("sweep failed")

    def drain_then_stop() -> None:
        # The server keeps answering while tasks in flight finish: they reach it over HTTP.
        dispatcher.stop(wait=True, grace=settings.shutdown_grace)
        server.shutdown()

    def shutdown(signum: int, frame: FrameType | None) -> None:
        del frame
        if stop.is_set():
            return
        stop.set()
        log.info(
            "signal %d: finishing tasks in flight (up to %g s)", signum, settings.shutdown_grace
        )
        threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(f"imgpipe serving on {base}", file=sys.stderr)
    if token is None:
        print("authentication is OFF (--no-auth)", file=sys.stderr)
    elif settings.api_token is None:
        print(f"API token (send as X-API-Key): {token}", file=sys.stderr)
    sys.stderr.flush()
    dispatcher.start()
    threading.Thread(target=sweeper, name="sweeper", daemon=True).start()
    try:
        server.serve_forever()
    finally:
        stop.set()
        dispatcher.stop(wait=False)
    # The grace is over and the leases still running were released: their threads must not
    # hold the exit (the interpreter would join them), so leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
