"""Work directories left behind by finished jobs (a worker killed mid-stage leaves one)."""

from __future__ import annotations

import logging
import re

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.pipeline.context import remove_job_dir

log = logging.getLogger(__name__)

_JOB_DIR = re.compile(r"^job-(\d+)$")


def sweep_work_dirs(settings: Settings) -> int:
    """Remove the work directories of jobs that are final or deleted; the number removed."""
    if not settings.work_path.is_dir():
        return 0
    ids = [int(m.group(1)) for p in settings.work_path.iterdir() if (m := _JOB_DIR.match(p.name))]
    with session_scope(settings.effective_database_url) as session:
        finished = service.final_job_ids(session, ids)
    for job_id in finished:
        remove_job_dir(settings, job_id)
    if finished:
        log.info("removed %d work directories of finished jobs", len(finished))
    return len(finished)
