"""One error hierarchy for the whole pipeline. Codes and HTTP statuses are PRODUCT.md's; each
door (CLI, HTTP, Cloud Function) maps `PipelineError` once, via `code`, `status`, `message`."""

from __future__ import annotations

from typing import ClassVar


class PipelineError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class PermanentError(PipelineError):
    """The input itself is bad: retrying cannot help, the task fails at once."""


class UnsupportedFormat(PermanentError):
    code = "unsupported_format"
    status = 415


class CorruptImage(PermanentError):
    code = "corrupt_image"
    status = 422


class ImageTooLarge(PermanentError):
    code = "image_too_large"
    status = 422


class FileTooLarge(PermanentError):
    code = "file_too_large"
    status = 413


class TransientError(PipelineError):
    """Storage, network, state store, timeouts: retried with backoff."""

    code = "unavailable"
    status = 503


class InvalidRequest(PipelineError):
    code = "invalid_request"
    status = 400


class Unauthorized(PipelineError):
    code = "unauthorized"
    status = 401


class Forbidden(PipelineError):
    code = "forbidden"
    status = 403


class NotFound(PipelineError):
    code = "not_found"
    status = 404


class Conflict(PipelineError):
    code = "conflict"
    status = 409


class RateLimited(PipelineError):
    code = "rate_limited"
    status = 429


class Internal(PipelineError):
    code = "internal"
    status = 500


class ConfigError(Exception):
    """A missing or malformed setting; raised at start-up, names the variable."""


_PERMANENT = (UnsupportedFormat, CorruptImage, ImageTooLarge, FileTooLarge)
_BY_CODE: dict[str, type[PipelineError]] = {
    cls.code: cls
    for cls in (
        *_PERMANENT,
        TransientError,
        InvalidRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        RateLimited,
        Internal,
    )
}


def permanent_from_code(code: str, message: str) -> PermanentError:
    """Rebuild a permanent error from an imgcore exception's code."""
    cls = _BY_CODE.get(code)
    if cls is None or not issubclass(cls, PermanentError):
        return CorruptImage(message)
    return cls(message)


def from_code(code: str, message: str) -> PipelineError:
    """Rebuild any error from a stored code and message."""
    return _BY_CODE.get(code, Internal)(message)
