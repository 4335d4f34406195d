"""The webhook event sink: POST the CloudEvent in structured mode, signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request

from imgpipe.errors import TransientError

TIMEOUT = 10.0


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self._secret = secret

    def send(self, body: bytes, event_type: str, subject: str) -> None:
        del event_type, subject  # both are in the body (structured mode)
        request = urllib.request.Request(  # noqa: S310 (an http(s) URL, checked in Settings)
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/cloudevents+json",
                "X-Imgpipe-Signature": signature(self._secret, body),
                "User-Agent": "imgpipe-events",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:
            raise TransientError("the webhook receiver is unreachable") from exc
        if not 200 <= status < 300:
            raise TransientError(f"the webhook receiver answered {status}")
