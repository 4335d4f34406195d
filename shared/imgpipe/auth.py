"""Who may call what: API keys for the API endpoints, a shared secret or a Google OIDC token
for the task endpoints (worker, failure callback)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from imgpipe.errors import Forbidden, Unauthorized

TokenVerifier = Callable[[str], None]  # raises Unauthorized / Forbidden


def lower_keys(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names are case-insensitive; every check looks them up in lower case."""
    return {name.lower(): value for name, value in headers}


@dataclass(frozen=True, slots=True)
class ApiAuth:
    token: str | None  # None = open (`--no-auth`)

    def check(self, headers: Mapping[str, str]) -> None:
        if self.token is None:
            return
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        if not given:
            raise Unauthorized("missing API key: send X-API-Key: <token>")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Forbidden("wrong API key")


@dataclass(frozen=True, slots=True)
class TaskAuth:
    """`secret`: X-Imgpipe-Task-Secret; `oidc`: the Bearer token Cloud Tasks adds."""

    mode: str
    secret: str | None = None
    verify_oidc: TokenVerifier | None = None

    def check(self, headers: Mapping[str, str]) -> None:
        if self.mode == "secret":
            given = headers.get("x-imgpipe-task-secret")
            if not given:
                raise Unauthorized("missing X-Imgpipe-Task-Secret")
            if self.secret is None or not hmac.compare_digest(given.encode(), self.secret.encode()):
                raise Forbidden("wrong task secret")
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing OIDC bearer token")
        if self.verify_oidc is None:
            raise Unauthorized("OIDC verification is not configured")
        self.verify_oidc(token.strip())
