"""Blobs on the local filesystem: create-once, atomic writes (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from imgpipe.errors import FileTooLarge, InvalidRequest, NotFound, TransientError
from imgpipe.ports import BlobInfo, BlobPage


class FileBlobStore:
    """Objects under `root`; `url_prefix` is where `imgpipe serve` serves them (`/files`)."""

    def __init__(self, root: Path, url_prefix: str | None = None) -> None:
        self.root = root.resolve()
        self.url_prefix = url_prefix

    def _path(self, path: str) -> Path:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\x00" in path:
            raise InvalidRequest("bad object path")
        return self.root.joinpath(*pure.parts)

    def put(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
        overwrite: bool = False,
    ) -> bool:
        # Content-Type and Cache-Control are derived from the extension when served locally.
        del content_type, cache_control
        target = self._path(path)
        if target.exists() and not overwrite:
            return False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if overwrite:
                os.replace(tmp, target)  # readers see the old file or the new, never half
                return True
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

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        try:
            with self._path(path).open("rb") as handle:
                if max_bytes is None:
                    return handle.read()
                data = handle.read(max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {path}") from None
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > max_bytes:
            raise FileTooLarge(f"{path} is larger than {max_bytes} bytes")
        return data

    def size(self, path: str) -> int | None:
        try:
            target = self._path(path)
            return target.stat().st_size if target.is_file() else None
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def delete(self, path: str) -> bool:
        try:
            self._path(path).unlink()
        except (FileNotFoundError, IsADirectoryError):
            return False
        return True

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
        # Only the folder that can hold matches is walked, not the whole store.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*PurePosixPath(head).parts) if head else self.root
        if not base.is_dir():
            return
        # Name order as strings, the order page tokens compare in (as in a bucket).
        found = sorted(
            (path.relative_to(self.root).as_posix(), path)
            for path in base.rglob("*")
            if not path.name.startswith(".tmp-")
        )
        for rel, path in found:
            if rel.startswith(prefix) and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    yield BlobInfo(rel, path.stat().st_size)

    def list_page(self, prefix: str, token: str | None, limit: int) -> BlobPage:
        items: list[BlobInfo] = []
        for info in self.list(prefix):
            if token is not None and info.path <= token:
                continue
            if len(items) == limit:
                return BlobPage(items, items[-1].path)
            items.append(info)
        return BlobPage(items, None)

    def url(self, path: str) -> str:
        if self.url_prefix is None:
            return str(self._path(path))
        return f"{self.url_prefix.rstrip('/')}/{path}"
