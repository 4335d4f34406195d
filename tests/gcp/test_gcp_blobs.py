"""GcsBlobStore against fake-gcs-server (directly and through a flaky loopback proxy)."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from pathlib import Path

import gcpenv
import pytest
from gcpharness import Gcs
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]
from google.oauth2 import service_account

from imgpipe.errors import NotFound, TransientError
from imgpipe.gcp.blobs import GcsBlobStore, UrlSigner
from imgpipe.settings import CACHE_CONTROL


@pytest.fixture
def bucket(gcs: Gcs) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    gcs.create_bucket(name)
    return name


def client_for(endpoint: str) -> storage.Client:
    return storage.Client(
        project="imgpipe-e2e",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def object_meta(gcs: Gcs, bucket: str, path: str) -> dict[str, str]:
    quoted = urllib.parse.quote(path, safe="")
    status, _, body = gcpenv.http("GET", f"{gcs.base}/storage/v1/b/{bucket}/o/{quoted}")
    assert status == 200, body
    meta: dict[str, str] = json.loads(body)
    return meta


def test_put_is_create_once_with_headers(gcs: Gcs, bucket: str) -> None:
    store = GcsBlobStore(client_for(gcs.base), bucket)
    path = "processed/abc/w320.jpg"
    assert store.put(path, b"one", content_type="image/jpeg", cache_control=CACHE_CONTROL)
    assert not store.put(path, b"two", content_type="image/jpeg", cache_control=CACHE_CONTROL)
    assert store.get(path) == b"one"
    meta = object_meta(gcs, bucket, path)
    assert meta["contentType"] == "image/jpeg"
    assert meta["cacheControl"] == CACHE_CONTROL
    assert store.exists(path) and not store.exists("processed/abc/none")
    assert store.size(path) == 3 and store.size("nope") is None
    with pytest.raises(NotFound):
        store.get("processed/missing")


def test_large_objects_stream_in_chunks(gcs: Gcs, bucket: str) -> None:
    store = GcsBlobStore(client_for(gcs.base), bucket)
    data = bytes(range(256)) * (9 * 4096)  # 9 MiB: above CHUNK_SIZE, resumable upload
    assert store.put("originals/big", data, content_type="image/jpeg")
    assert store.get("originals/big") == data
    # (fake-gcs-server ignores ifGenerationMatch on resumable uploads, so create-once of a
    # second chunked write is covered by GCS itself, not checked here.)


def test_list_and_delete_prefix(gcs: Gcs, bucket: str) -> None:
    store = GcsBlobStore(client_for(gcs.base), bucket)
    for name in ("p/a/1", "p/a/2", "p/b/1", "q/1"):
        store.put(name, name.encode(), content_type="text/plain")
    assert [(b.path, b.size) for b in store.list("p/")] == [
        ("p/a/1", 5),
        ("p/a/2", 5),
        ("p/b/1", 5),
    ]
    assert store.delete_prefix("p/a/") == 2
    assert [b.path for b in store.list("")] == ["p/b/1", "q/1"]


def test_public_url_serves_the_object(gcs: Gcs, bucket: str) -> None:
    store = GcsBlobStore(client_for(gcs.base), bucket)
    store.put("processed/x/w 1.jpg", b"jpeg!", content_type="image/jpeg")
    url = store.url("processed/x/w 1.jpg")
    assert url == f"{gcs.base}/{bucket}/processed/x/w%201.jpg"
    status, _headers, body = gcpenv.http("GET", url)
    assert (status, body) == (200, b"jpeg!")


def test_signed_urls(gcs: Gcs, bucket: str, sa_key_file: Path) -> None:
    creds = service_account.Credentials.from_service_account_file(str(sa_key_file))  # type: ignore[no-untyped-call]
    store = GcsBlobStore(client_for(gcs.base), bucket, url_mode="signed", signer=UrlSigner(creds))
    store.put("processed/x/a.jpg", b"data", content_type="image/jpeg")
    url = store.url("processed/x/a.jpg")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Credential"][0].startswith("imgpipe-functions@")
    assert query["X-Goog-Expires"] == ["3600"]
    # A signed PUT into the bucket, as a browser would use it (fake-gcs skips the signature).
    upload = store.signed_upload("incoming/photo.jpg", "image/jpeg", 1000)
    signed = urllib.parse.parse_qs(urllib.parse.urlsplit(upload.url).query)
    # The size range is a signed header: Cloud Storage refuses a body outside it.
    assert signed["X-Goog-SignedHeaders"][0].split(";") == [
        "content-type",
        "host",
        "x-goog-content-length-range",
    ]
    assert upload.headers == {"x-goog-content-length-range": "0,1000"}
    status, _, body = gcpenv.http(
        "PUT",
        upload.url,
        body=b"uploaded",
        headers={"Content-Type": "image/jpeg", **upload.headers},
    )
    assert status == 200, body
    assert store.get("incoming/photo.jpg") == b"uploaded"


def test_storage_outage_is_transient_and_blips_are_retried(gcs: Gcs, bucket: str) -> None:
    proxy = gcpenv.FlakyProxy(gcs.base)
    try:
        store = GcsBlobStore(client_for(proxy.base), bucket)
        store.put("k", b"v", content_type="text/plain")
        proxy.fail_for(30)
        with pytest.raises(TransientError):
            store.get("k")
        with pytest.raises(TransientError):
            store.put("k2", b"v", content_type="text/plain")
        assert proxy.failed >= 4  # the client retried before giving up
        proxy.fail_for(0.5)  # a blip: absorbed by the client's own retry
        assert store.get("k") == b"v"
        assert proxy.failed >= 1
    finally:
        proxy.close()
