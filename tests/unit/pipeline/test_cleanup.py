from __future__ import annotations

from pathlib import Path

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.pipeline.cleanup import sweep_work_dirs
from audiojobs.pipeline.context import job_dir_for


def test_sweep_removes_only_finished_jobs_dirs(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": sqlite_url, "AUDIO_WORK_DIR": str(tmp_path / "work")})
    with session_scope(sqlite_url) as s:
        live = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=1, request_id=None).id
        done = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=1, request_id=None).id
        service.fail_job(s, done, code="x", message="y")
    for job_id in (live, done, 999):
        job_dir_for(settings, job_id).mkdir(parents=True)
    (settings.work_path / "not-a-job").mkdir()
    assert sweep_work_dirs(settings) == 2
    assert sorted(p.name for p in settings.work_path.iterdir()) == [f"job-{live}", "not-a-job"]
