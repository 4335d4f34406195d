"""One mapping from google.api_core / transport exceptions to imgpipe's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from imgpipe.errors import Forbidden, NotFound, PipelineError, RateLimited, TransientError

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


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise client exceptions as `PipelineError`s naming `what` was being done."""
    try:
        yield
    except PipelineError:
        raise
    except gexc.NotFound as exc:
        raise NotFound(f"{what}: not found") from exc
    except (gexc.Forbidden, gexc.Unauthorized, gexc.PermissionDenied) as exc:
        raise Forbidden(f"{what}: permission denied ({exc.message})") from exc
    except TRANSIENT as exc:
        if isinstance(exc, gexc.TooManyRequests | gexc.ResourceExhausted):
            raise RateLimited(f"{what}: rate limited, try again") from exc
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc
