"""The ``file`` store: objects are files below one directory of this host (the default)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from audiojobs.errors import ArtifactMissing, ConfigError, StorageMisconfigured


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_url(cls, url: str) -> FileStore:
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ConfigError(f"AUDIO_STORAGE_URL: a file store is file:///ABSOLUTE/DIR, not {url!r}")
        return cls(Path(unquote(parsed.path)))

    def describe(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
            raise ValueError(f"not an object key: {key!r}")
        return self.root.joinpath(*[p for p in parts if p])

    def _writable_parent(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise StorageMisconfigured(f"AUDIO_STORAGE_URL: {self.root} is not writable ({exc.strerror})") from None

    def _temp(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        self._writable_parent(target)
        tmp = self._temp(target)
        try:
            try:
                os.link(source, tmp)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(source, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        target = self._path(key)
        self._writable_parent(target)
        tmp = self._temp(target)
        try:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(stream, out, 1024 * 1024)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def fetch_file(self, key: str, target: Path) -> None:
        source = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp(target)
        try:
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        except FileNotFoundError:
            raise ArtifactMissing(f"{key} is not in {self.describe()}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        self._writable_parent(target)
        tmp = self._temp(target)
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(f"{key} is not in {self.describe()}") from None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def list_objects(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        if not self.root.is_dir():
            return
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # a write in progress
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        mtime = path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    yield key, dt.datetime.fromtimestamp(mtime, dt.timezone.utc)

    def delete_prefix(self, prefix: str) -> int:
        keys = [key for key, _when in self.list_objects(prefix)]
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        # Empty directories left under the prefix go too (never the root itself).
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else None
        if top is not None and top.is_dir():
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    Path(dirpath).rmdir()
                except OSError:
                    pass
        return len(keys)

    def ready(self) -> None:
        if not self.root.is_dir():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageMisconfigured(f"AUDIO_STORAGE_URL: {self.root} cannot be created ({exc.strerror})") \
                    from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageMisconfigured(f"AUDIO_STORAGE_URL: {self.root} is not writable")
