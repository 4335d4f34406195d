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

from imgpipe.errors import FileTooLarge, NotFound
from imgpipe.gcp._errors import translated
from imgpipe.ports import BlobInfo, BlobPage

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
    headers: dict[str, str]  # to send with the PUT, besides Content-Type


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
        self,
        path: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        overwrite: bool = False,
    ) -> bool:
        blob = self._bucket.blob(path, chunk_size=CHUNK_SIZE if len(data) > CHUNK_SIZE else None)
        blob.cache_control = cache_control
        with translated(f"writing gs://{self.bucket_name}/{path}"):
            try:
                # Precondition "no live generation": of two writers exactly one creates it.
                # The precondition makes the write idempotent, so the client may retry it.
                # An overwrite is idempotent too (same bytes), and an object write is atomic.
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=None if overwrite else 0,
                    retry=self._retry,
                    timeout=self._timeout,
                )
            except gexc.PreconditionFailed:
                return False
        return True

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        with translated(f"reading gs://{self.bucket_name}/{path}"):
            try:
                # A ranged read: an object replaced by a larger one after its size was checked
                # still never brings more than max_bytes + 1 into memory.
                data: bytes = self._bucket.blob(path).download_as_bytes(
                    end=None if max_bytes is None else max_bytes,
                    retry=self._retry,
                    timeout=self._timeout,
                )
            except gexc.NotFound:
                raise NotFound(f"no object {path}") from None
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLarge(f"the object is larger than {max_bytes} bytes")
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

    def delete(self, path: str) -> bool:
        with translated(f"deleting gs://{self.bucket_name}/{path}"):
            try:
                self._bucket.blob(path).delete(retry=self._retry, timeout=self._timeout)
            except gexc.NotFound:
                return False
        return True

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

    def list_page(self, prefix: str, token: str | None, limit: int) -> BlobPage:
        with translated(f"listing gs://{self.bucket_name}/{prefix}*"):
            iterator = self._client.list_blobs(
                self._bucket,
                prefix=prefix,
                max_results=limit,
                page_token=token,
                retry=self._retry,
                timeout=self._timeout,
            )
            page = next(iterator.pages, None)
            items = [] if page is None else [BlobInfo(b.name, int(b.size or 0)) for b in page]
            next_token = iterator.next_page_token
        return BlobPage(items, next_token or None)

    def url(self, path: str) -> str:
        if self._url_mode == "signed":
            return self._signed(path, "GET", SIGNED_URL_TTL)
        endpoint = str(self._client.api_endpoint).rstrip("/")
        return f"{endpoint}/{self.bucket_name}/{quote(path, safe='/~')}"

    def signed_upload(
        self,
        path: str,
        content_type: str,
        max_bytes: int,
        ttl: dt.timedelta = SIGNED_URL_TTL,
    ) -> SignedUpload:
        """A V4 signed PUT URL; the client must send the same Content-Type and the
        `x-goog-content-length-range` header, which is signed: Cloud Storage refuses a body
        outside 0..max_bytes before storing anything."""
        expires = dt.datetime.now(dt.UTC) + ttl
        headers = {"x-goog-content-length-range": f"0,{max_bytes}"}
        url = self._signed(path, "PUT", ttl, content_type=content_type, headers=headers)
        return SignedUpload(url, path, content_type, expires.timestamp(), headers)

    def _signed(
        self,
        path: str,
        method: str,
        ttl: dt.timedelta,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        endpoint = str(self._client.api_endpoint).rstrip("/")
        with translated(f"signing a URL for gs://{self.bucket_name}/{path}"):
            url: str = self._bucket.blob(path).generate_signed_url(
                version="v4",
                expiration=ttl,
                method=method,
                content_type=content_type,
                headers=None if headers is None else dict(headers),  # the library adds to it
                api_access_endpoint=endpoint,
                **self._signer.kwargs(),
            )
        return url
