"""Where a job's artifacts live between stages: one interface, two backends.

``AUDIO_STORAGE_URL`` chooses: empty or ``file://DIR`` a directory on this host (``AUDIO_WORK_DIR``
when empty); ``s3://BUCKET/PREFIX`` any S3-compatible object store (``AUDIO_S3_ENDPOINT_URL``;
credentials and region from the standard AWS variables and config chain). ``open_store`` returns
the configured one; ``check`` writes, reads back and deletes a probe object.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

from audiojobs.config import Settings
from audiojobs.errors import ConfigError
from audiojobs.storage.interfaces import ArtifactStore

PROBE_PREFIX = "audiojobs-probe/"
JOBS_PREFIX = "jobs/"


def job_prefix(job_uuid: str) -> str:
    """Every object of one job lies under this prefix."""
    return f"{JOBS_PREFIX}{job_uuid}/"


def artifact_key(job_uuid: str, stage: str, fence: int, name: str) -> str:
    """The object an attempt writes: named by job, stage and attempt (its fence), so a re-delivered
    or fenced-off attempt writes beside the current one, never over it."""
    return f"{job_prefix(job_uuid)}{stage}/{fence}/{name}"


def open_store(settings: Settings) -> ArtifactStore:
    """The object store ``AUDIO_STORAGE_URL`` names (one per URL and endpoint per process)."""
    return _open(settings.storage_url or settings.work_path.resolve().as_uri(), settings.s3_endpoint_url)


@lru_cache(maxsize=8)
def _open(url: str, endpoint: str | None) -> ArtifactStore:
    if url.startswith("file://"):
        from audiojobs.storage.filestore import FileStore

        return FileStore.from_url(url)
    if url.startswith("s3://"):
        # boto3 is imported only here: the API process pays for it only when it uses S3.
        from audiojobs.storage.s3 import S3Store

        return S3Store.from_url(url, endpoint)
    raise ConfigError(f"AUDIO_STORAGE_URL must start with file:// or s3://, not {url!r}")


@dataclass(frozen=True)
class CheckReport:
    store: str
    key: str
    size: int
    milliseconds: float


def check(store: ArtifactStore) -> CheckReport:
    """Write a probe object, read it back, delete it; raises the store's error on any failure."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    body = f"audiojobs storage probe {key}\n".encode()
    started = time.perf_counter()
    store.put_bytes(key, body)
    try:
        if store.get_bytes(key) != body:
            raise ConfigError(f"{store.describe()}: the probe object read back differs from what was written")
    finally:
        store.delete_prefix(key)
    return CheckReport(store.describe(), key, len(body), (time.perf_counter() - started) * 1000)


__all__ = ["ArtifactStore", "CheckReport", "artifact_key", "check", "job_prefix", "open_store"]
