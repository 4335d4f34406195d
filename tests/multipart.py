"""The multipart/form-data body a browser sends to POST /upload, for every HTTP suite."""

from __future__ import annotations

import uuid


def upload_body(name: str, data: bytes, **fields: str) -> tuple[bytes, str]:
    """Returns the body and its Content-Type: the form fields, then `file` named `name`."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
