"""Blobs on the local filesystem: create-once, atomic writes (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from imgpipe.errors import InvalidRequest, NotFound, TransientError
from imgpipe.ports import BlobInfo


class FileBlobStore:
    """Objects under `root`; `url_prefix` is where `imgpipe serve` serves them (`/files`)."""

    def __init__(self, root: Path, url_prefix: str | None = None) -> None:
        self.root = root.resolve()
        self.url_prefix = url_prefix

    def _path(self, path: str) -> Path:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise InvalidRequest(f"bad object path {path!r}")
        return self.root.joinpath(*pure.parts)

    def put(
        self, path: str, data: bytes, *, content_type: str, cache_control: str | None = None
    ) -> bool:
        # Content-Type and Cache-Control are derived from the extension when served locally.
        del content_type, cache_control
        target = self._path(path)
        if target.exists():
            return False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            try:
                # link() fails if the target appeared meanwhile: the first writer wins.
                os.link(tmp, target)
                created = True
            except FileExistsError:
                created = False
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise TransientError(f"cannot write {path}: {exc.strerror}") from exc
        return created

    def get(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {path}") from None
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc.strerror}") from exc

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def delete_prefix(self, prefix: str) -> int:
        target = self._path(prefix.rstrip("/"))
        if target.is_dir():
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
            return count
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            return 1
        return 0

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        base = self.root
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.name.startswith(".tmp-"):
                continue
            rel = path.relative_to(base).as_posix()
            if rel.startswith(prefix):
                yield BlobInfo(rel, path.stat().st_size)

    def url(self, path: str) -> str:
        if self.url_prefix is None:
            return str(self._path(path))
        return f"{self.url_prefix.rstrip('/')}/{path}"
