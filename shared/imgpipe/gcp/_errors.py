"""One mapping from google.api_core / transport exceptions to imgpipe's errors.

Messages that reach a caller are generic: a bucket name, a service account, a permission or
a URL is an internal detail, written to the log (with the exception) and nowhere else. A
permission that imgpipe's own service account lacks, or a request Google refuses as malformed
or out of precondition, is a server fault (`internal`, 500), not the caller's (`forbidden`
means the caller's key may not do this)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from imgpipe.errors import Internal, NotFound, PipelineError, RateLimited, TransientError

log = logging.getLogger("imgpipe.gcp")

# Worth another attempt: the service or the network, not the request, was at fault.
TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.ServerError,  # every 5xx, incl. ServiceUnavailable, InternalServerError
    gexc.DeadlineExceeded,
    gexc.Aborted,  # transaction contention after the client's own retries
    gexc.RetryError,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.Unknown,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exc.TransportError,
    ConnectionError,
    TimeoutError,
)
# imgpipe's own configuration or deployment is at fault.
SERVER_FAULT: tuple[type[BaseException], ...] = (
    gexc.Forbidden,
    gexc.Unauthorized,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.InvalidArgument,
    gexc.BadRequest,
    gexc.FailedPrecondition,
    auth_exc.DefaultCredentialsError,
    auth_exc.RefreshError,
)


@contextmanager
def translated(what: str, service: str = "storage") -> Iterator[None]:
    """Re-raise client exceptions as `PipelineError`s. `what` (which may name buckets and
    objects) goes to the log only; the raised message names the `service` and nothing else."""
    try:
        yield
    except PipelineError:
        raise
    except gexc.NotFound as exc:
        raise NotFound(f"{service}: not found") from exc
    except SERVER_FAULT as exc:
        log.error("%s: %s: %s", what, type(exc).__name__, exc)
        raise Internal("internal error") from exc
    except TRANSIENT as exc:
        log.warning("%s: %s: %s", what, type(exc).__name__, exc)
        if isinstance(exc, gexc.TooManyRequests | gexc.ResourceExhausted):
            raise RateLimited(f"{service} is rate limited, try again") from exc
        raise TransientError(f"{service} unavailable, try again") from exc
