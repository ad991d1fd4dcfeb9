"""The interface every artifact store implements (``storage/filestore.py``, ``storage/s3.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol


class ArtifactStore(Protocol):
    """Objects named by keys (``a/b/c``: no leading ``/``, no ``..``), written whole or not at all.

    Errors are ``errors.StorageUnavailable`` (transient: unreachable, timeouts, 5xx),
    ``errors.StorageMisconfigured`` (permanent: no such bucket, credentials refused; the message
    names the setting) and ``errors.ArtifactMissing`` (no such object).
    """

    def describe(self) -> str:
        """Where the store points, for messages (never a secret)."""

    def put_file(self, key: str, source: Path) -> None:
        """Store the file at ``source`` as ``key``, streamed (memory stays flat whatever its size)."""

    def put_stream(self, key: str, stream: IO[bytes]) -> None:
        """Store what ``stream`` holds (read to its end) as ``key``, streamed."""

    def fetch_file(self, key: str, target: Path) -> None:
        """Write object ``key`` to ``target`` (replaced whole, never half written), streamed."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object (JSON between stages)."""

    def get_bytes(self, key: str) -> bytes:
        """Read a small object."""

    def local_path(self, key: str) -> Path | None:
        """Where object ``key`` already is on this host's disk (a ``file`` store), else None."""

    def list_objects(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        """(key, last modified, UTC) of every object under ``prefix``."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (or the object ``prefix`` itself); how many."""

    def ready(self) -> None:
        """A cheap reachability check (for /readyz); raises the store's errors."""
