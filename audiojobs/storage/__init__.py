"""Where a job's artifacts live between stages: one interface, two backends.

``AUDIO_STORAGE_URL`` chooses: empty or ``file://DIR`` a directory on this host (``AUDIO_WORK_DIR``
when empty); ``s3://BUCKET/PREFIX`` any S3-compatible object store (``AUDIO_S3_ENDPOINT_URL``;
credentials and region from the standard AWS variables and config chain). ``open_store`` returns
the configured one; ``check`` writes, reads back and deletes a probe object.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.errors import AudioJobsError, ConfigError
from audiojobs.storage.filestore import FileStore
from audiojobs.storage.interfaces import ArtifactStore

log = logging.getLogger(__name__)
PROBE_PREFIX = "audiojobs-probe/"
JOBS_PREFIX = "jobs/"


SOURCE_STEM = "source"  # the artifact name of a job's original media (downloaded, read or uploaded)


def job_prefix(job_uuid: str) -> str:
    """Every object of one job lies under this prefix."""
    return f"{JOBS_PREFIX}{job_uuid}/"


def artifact_key(job_uuid: str, stage: str, fence: int, name: str) -> str:
    """The object an attempt writes: named by job, stage and attempt (its fence), so a re-delivered
    or fenced-off attempt writes beside the current one, never over it."""
    return f"{job_prefix(job_uuid)}{stage}/{fence}/{name}"


def job_scratch_dir(settings: Settings, job_uuid: str) -> Path:
    """This host's private directory for one job's files."""
    return settings.scratch_path / f"job-{job_uuid}"


def remove_job_files(settings: Settings, job_uuid: str | None) -> None:
    """The job is final (or gone): its objects in the store and this host's scratch copies go.
    Never raises: what a store outage leaves behind, the beat sweep removes later."""
    if not job_uuid:
        return
    shutil.rmtree(job_scratch_dir(settings, job_uuid), ignore_errors=True)
    try:
        open_store(settings).delete_prefix(job_prefix(job_uuid))
    except AudioJobsError as exc:
        log.warning("objects of job %s not deleted now (%s); the sweep will", job_uuid, exc.message)


def open_store(settings: Settings) -> ArtifactStore:
    """The object store ``AUDIO_STORAGE_URL`` names (one per URL and endpoint per process)."""
    return _open(settings.storage_url or settings.work_path.resolve().as_uri(), settings.s3_endpoint_url)


@lru_cache(maxsize=8)
def _open(url: str, endpoint: str | None) -> ArtifactStore:
    if url.startswith("file://"):
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
