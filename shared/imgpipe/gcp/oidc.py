"""Verification of the Google-signed OIDC tokens Cloud Tasks (and Cloud Scheduler) send:
RS256 signature against Google's JWKS, audience, issuer, expiry, and the service account's
verified email. 401 when the token is missing, expired, unsigned or not Google's; 403 when it
is valid but meant for another audience or minted for another account."""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

import jwt

from imgpipe.errors import Forbidden, TransientError, Unauthorized

ISSUERS = ("https://accounts.google.com", "accounts.google.com")
LEEWAY = 30.0  # seconds of clock skew tolerated on exp / iat / nbf


class OidcVerifier:
    """Callable as `auth.TokenVerifier`. Keys are cached by PyJWKClient; an unknown `kid`
    refreshes the set once (Google rotates its keys)."""

    def __init__(
        self,
        *,
        audience: str,
        service_account: str,
        certs_url: str,
        leeway: float = LEEWAY,
        cache_seconds: int = 3600,
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self._leeway = leeway
        self._jwks = jwt.PyJWKClient(certs_url, cache_keys=True, lifespan=cache_seconds)
        self._lock = threading.Lock()

    def __call__(self, token: str) -> None:
        self.verify(token)

    def _key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthorized("malformed OIDC token") from None
        if header.get("alg") != "RS256":
            raise Unauthorized("OIDC token is not RS256-signed")
        try:
            with self._lock:
                return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise TransientError(f"cannot fetch the OIDC signing keys: {exc}") from exc
        except jwt.PyJWKClientError:
            raise Unauthorized("OIDC token signed by an unknown key") from None

    def verify(self, token: str) -> dict[str, Any]:
        key = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"require": ["exp", "iat", "iss", "aud"], "verify_aud": False},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("OIDC token has expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("OIDC token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid OIDC token: {exc}") from None
        if claims.get("iss") not in ISSUERS:
            raise Unauthorized("OIDC token was not issued by Google")
        if claims.get("iat", 0) > time.time() + self._leeway:
            raise Unauthorized("OIDC token issued in the future")
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if self.audience not in audiences:
            raise Forbidden("OIDC token is for another audience")
        email = str(claims.get("email") or "")
        if claims.get("email_verified") is not True or not hmac.compare_digest(
            email.lower().encode(), self.service_account.lower().encode()
        ):
            raise Forbidden("OIDC token is for another service account")
        return claims
