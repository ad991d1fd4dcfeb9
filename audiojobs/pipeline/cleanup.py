"""What finished jobs leave behind: this host's scratch copies, objects in the store, old work dirs.

A job's objects and scratch copies go when it ends (``context.remove_job_files``); what a killed
worker or a store outage leaves is removed here: by the beat sweep every 15 minutes (objects of
final or unknown jobs older than ``AUDIO_STORAGE_ORPHAN_HOURS``, and the scratch of the host it
runs on), and by every worker process for its own host's scratch, at most every few minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import time

from audiojobs import storage
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import AudioJobsError
from audiojobs.jobs import queries
from audiojobs.storage import remove_job_files

log = logging.getLogger(__name__)

_SCRATCH_DIR = re.compile(r"^job-([0-9a-f-]{36})$")
_OLD_WORK_DIR = re.compile(r"^job-(\d+)$")  # the per-job work directories of earlier versions
SCRATCH_SWEEP_SECONDS = 300.0
_last_scratch_sweep = [0.0]


def sweep_scratch(settings: Settings) -> int:
    """Remove this host's scratch directories of jobs that are final or gone; how many."""
    root = settings.scratch_path
    uuids = [m.group(1) for p in root.iterdir() if (m := _SCRATCH_DIR.match(p.name))] if root.is_dir() else []
    if not uuids:
        return 0
    with session_scope(settings.effective_database_url) as session:
        finished = queries.final_job_uuids(session, uuids)
    for job_uuid in finished:
        shutil.rmtree(root / f"job-{job_uuid}", ignore_errors=True)
    return len(finished)


def sweep_scratch_now_and_then(settings: Settings) -> None:
    """A worker process sweeps its host's scratch at most every SCRATCH_SWEEP_SECONDS; never raises."""
    if time.monotonic() - _last_scratch_sweep[0] < SCRATCH_SWEEP_SECONDS:
        return
    _last_scratch_sweep[0] = time.monotonic()
    try:
        sweep_scratch(settings)
    except Exception as exc:  # noqa: BLE001 - housekeeping must never fail a stage
        log.warning("scratch sweep failed: %r", exc)


def sweep_orphan_objects(settings: Settings) -> int:
    """Delete the objects of jobs that are final or unknown, when their newest object is older than
    AUDIO_STORAGE_ORPHAN_HOURS (and probe objects as old); how many jobs' objects went."""
    cutoff = utcnow() - dt.timedelta(hours=settings.storage_orphan_hours)
    store = storage.open_store(settings)
    newest: dict[str, dt.datetime] = {}
    for key, modified in store.list_objects(storage.JOBS_PREFIX):
        job_uuid = key[len(storage.JOBS_PREFIX):].split("/", 1)[0]
        newest[job_uuid] = max(modified, newest.get(job_uuid, modified))
    old = [job_uuid for job_uuid, modified in newest.items() if modified < cutoff]
    with session_scope(settings.effective_database_url) as session:
        finished = queries.final_job_uuids(session, old)
    for job_uuid in finished:
        store.delete_prefix(storage.job_prefix(job_uuid))
    for key, modified in list(store.list_objects(storage.PROBE_PREFIX)):
        if modified < cutoff:
            store.delete_prefix(key)
    return len(finished)


def sweep_work_dirs(settings: Settings) -> int:
    """The beat sweep: orphaned objects, this host's scratch, old per-job work directories; how many
    jobs' leftovers were removed."""
    removed = sweep_scratch(settings)
    try:
        removed += sweep_orphan_objects(settings)
    except AudioJobsError as exc:  # the store is down: the next sweep tries again
        log.warning("orphan objects not swept: %s", exc.message)
    work = settings.work_path
    ids = [int(m.group(1)) for p in work.iterdir() if (m := _OLD_WORK_DIR.match(p.name))] if work.is_dir() else []
    if ids:
        with session_scope(settings.effective_database_url) as session:
            finished = queries.final_job_ids(session, ids)
        for job_id in finished:
            shutil.rmtree(work / f"job-{job_id}", ignore_errors=True)
        removed += len(finished)
    if removed:
        log.info("swept the leftovers of %d finished jobs", removed)
    return removed


__all__ = ["remove_job_files", "sweep_orphan_objects", "sweep_scratch", "sweep_scratch_now_and_then",
           "sweep_work_dirs"]
