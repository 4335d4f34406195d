"""OidcVerifier with tokens signed by a test RSA key served from a local JWKS endpoint."""

from __future__ import annotations

import base64
import json
import time

import gcpenv
import pytest
from gcpharness import TASKS_SA, SigningKey, new_key

from imgpipe.auth import TaskAuth
from imgpipe.errors import Forbidden, TransientError, Unauthorized
from imgpipe.gcp.oidc import OidcVerifier

AUD = "http://audience.invalid/tasks"


@pytest.fixture
def verifier(jwks: gcpenv.JwksServer) -> OidcVerifier:
    return OidcVerifier(audience=AUD, service_account=TASKS_SA, certs_url=jwks.url)


def test_valid_token(verifier: OidcVerifier, signing_key: SigningKey) -> None:
    claims = verifier.verify(signing_key.token())
    assert claims["email"] == TASKS_SA
    verifier.verify(signing_key.token(iss="accounts.google.com", aud=["other", AUD]))
    TaskAuth("oidc", verify_oidc=verifier).check({"authorization": f"Bearer {signing_key.token()}"})


@pytest.mark.parametrize(
    ("claims", "error", "message"),
    [
        ({"aud": "http://elsewhere/tasks"}, Forbidden, "audience"),
        ({"email": "intruder@proj.iam.gserviceaccount.com"}, Forbidden, "service account"),
        ({"email_verified": False}, Forbidden, "service account"),
        ({"email": None}, Forbidden, "service account"),
        ({"exp": int(time.time()) - 120}, Unauthorized, "expired"),
        ({"iss": "https://evil.example"}, Unauthorized, "not issued by Google"),
        ({"exp": None}, Unauthorized, "exp"),
    ],
)
def test_refused_claims(
    verifier: OidcVerifier,
    signing_key: SigningKey,
    claims: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        verifier.verify(signing_key.token(**claims))


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_unsigned_forged_and_garbage_tokens(
    verifier: OidcVerifier, signing_key: SigningKey
) -> None:
    good = signing_key.token()
    header, payload, _ = good.split(".")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': signing_key.kid})}.{payload}."
    with pytest.raises(Unauthorized, match="RS256"):
        verifier.verify(unsigned)
    # Same kid, signed by another key: the signature does not verify.
    impostor = SigningKey(signing_key.kid, new_key("x").private)
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify(impostor.token())
    # A key the JWKS does not know.
    with pytest.raises(Unauthorized, match="unknown key"):
        verifier.verify(new_key("rotated-away").token())
    # Payload swapped under a valid signature.
    forged = f"{header}.{_b64({'aud': AUD, 'email': 'x@y', 'iss': 'accounts.google.com'})}."
    with pytest.raises(Unauthorized):
        verifier.verify(forged + good.split(".")[2])
    with pytest.raises(Unauthorized, match="malformed"):
        verifier.verify("not-a-jwt")
    with pytest.raises(Unauthorized, match="missing"):
        TaskAuth("oidc", verify_oidc=verifier).check({})


def test_unreachable_jwks_is_transient(signing_key: SigningKey) -> None:
    port = gcpenv.free_port()
    down = OidcVerifier(
        audience=AUD, service_account=TASKS_SA, certs_url=f"http://127.0.0.1:{port}/certs"
    )
    with pytest.raises(TransientError):
        down.verify(signing_key.token())
