"""Blobs on Cloud Storage: create-once writes (`if_generation_match=0`), Content-Type and
Cache-Control on every object, public or V4-signed URLs, signed PUT URLs for uploads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import google.auth
import google.auth.credentials
import google.auth.transport.requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY as STORAGE_RETRY  # type: ignore[import-untyped]

from imgpipe.errors import NotFound
from imgpipe.gcp._errors import translated
from imgpipe.ports import BlobInfo

# Brief blips are retried here; a longer outage becomes a TransientError and the task is
# retried by Cloud Tasks with its own backoff (a worker must not sit in one attempt for long).
# The storage library's predicate (it knows the resumable-media errors), shorter delays.
DEFAULT_RETRY: Retry = STORAGE_RETRY.with_delay(initial=0.2, maximum=2.0).with_timeout(5.0)
DEFAULT_TIMEOUT = 60.0
# Objects above this are streamed in chunks (resumable upload) rather than one request.
CHUNK_SIZE = 8 * 1024 * 1024
SIGNED_URL_TTL = dt.timedelta(hours=1)


class UrlSigner:
    """V4 signing. With a key file the credentials sign locally; on Cloud Functions they are
    token-only, so the IAM signBlob API signs with the runtime service account."""

    def __init__(self, credentials: google.auth.credentials.Credentials | None = None) -> None:
        self._credentials = credentials

    def kwargs(self) -> dict[str, Any]:
        credentials = self._credentials
        if credentials is None:
            credentials, _ = google.auth.default()
            self._credentials = credentials
        if isinstance(credentials, google.auth.credentials.Signing):
            return {"credentials": credentials}
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
        return {
            "service_account_email": getattr(credentials, "service_account_email", None),
            "access_token": credentials.token,
        }


@dataclass(frozen=True, slots=True)
class SignedUpload:
    url: str
    object: str
    content_type: str
    expires_at: float


class GcsBlobStore:
    """One bucket. `url_mode` is "public" (the bucket or the objects are public, or a CDN is in
    front) or "signed" (V4 GET URLs valid for SIGNED_URL_TTL)."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        url_mode: str = "public",
        signer: UrlSigner | None = None,
        retry: Retry = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if url_mode not in ("public", "signed"):
            raise ValueError(f"url_mode must be 'public' or 'signed', got {url_mode!r}")
        self._client = client
        self._bucket = client.bucket(bucket)
        self.bucket_name = bucket
        self._url_mode = url_mode
        self._signer = signer or UrlSigner()
        self._retry = retry
        self._timeout = timeout

    def put(
        self, path: str, data: bytes, *, content_type: str, cache_control: str | None = None
    ) -> bool:
        blob = self._bucket.blob(path, chunk_size=CHUNK_SIZE if len(data) > CHUNK_SIZE else None)
        blob.cache_control = cache_control
        with translated(f"writing gs://{self.bucket_name}/{path}"):
            try:
                # Precondition "no live generation": of two writers exactly one creates it.
                # The precondition makes the write idempotent, so the client may retry it.
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=0,
                    retry=self._retry,
                    timeout=self._timeout,
                )
            except gexc.PreconditionFailed:
                return False
        return True

    def get(self, path: str) -> bytes:
        with translated(f"reading gs://{self.bucket_name}/{path}"):
            try:
                data: bytes = self._bucket.blob(path).download_as_bytes(
                    retry=self._retry, timeout=self._timeout
                )
            except gexc.NotFound:
                raise NotFound(f"no object {path}") from None
        return data

    def exists(self, path: str) -> bool:
        with translated(f"checking gs://{self.bucket_name}/{path}"):
            found: bool = self._bucket.blob(path).exists(retry=self._retry, timeout=self._timeout)
        return found

    def size(self, path: str) -> int | None:
        """The object's size from its metadata, None when absent (no download)."""
        with translated(f"reading metadata of gs://{self.bucket_name}/{path}"):
            blob = self._bucket.get_blob(path, retry=self._retry, timeout=self._timeout)
        return None if blob is None else int(blob.size or 0)

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        with translated(f"deleting gs://{self.bucket_name}/{prefix}*"):
            for blob in list(self._client.list_blobs(self._bucket, prefix=prefix)):
                try:
                    blob.delete(retry=self._retry, timeout=self._timeout)
                    count += 1
                except gexc.NotFound:
                    pass  # deleted concurrently: the goal is reached
        return count

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        with translated(f"listing gs://{self.bucket_name}/{prefix}*"):
            for blob in self._client.list_blobs(
                self._bucket, prefix=prefix, retry=self._retry, timeout=self._timeout
            ):
                yield BlobInfo(blob.name, int(blob.size or 0))

    def url(self, path: str) -> str:
        if self._url_mode == "signed":
            return self._signed(path, "GET", SIGNED_URL_TTL)
        endpoint = str(self._client.api_endpoint).rstrip("/")
        return f"{endpoint}/{self.bucket_name}/{quote(path, safe='/~')}"

    def signed_upload(
        self, path: str, content_type: str, ttl: dt.timedelta = SIGNED_URL_TTL
    ) -> SignedUpload:
        """A V4 signed PUT URL; the client must send the same Content-Type."""
        expires = dt.datetime.now(dt.UTC) + ttl
        url = self._signed(path, "PUT", ttl, content_type=content_type)
        return SignedUpload(url, path, content_type, expires.timestamp())

    def _signed(
        self, path: str, method: str, ttl: dt.timedelta, content_type: str | None = None
    ) -> str:
        endpoint = str(self._client.api_endpoint).rstrip("/")
        with translated(f"signing a URL for gs://{self.bucket_name}/{path}"):
            url: str = self._bucket.blob(path).generate_signed_url(
                version="v4",
                expiration=ttl,
                method=method,
                content_type=content_type,
                api_access_endpoint=endpoint,
                **self._signer.kwargs(),
            )
        return url
