"""The job service on both databases."""

from __future__ import annotations

from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.states import Stage


def _create(url: str, owner: str = "1") -> int:
    with session_scope(url) as s:
        return service.create_job(s, owner_user_id=owner, payload={"url": "https://e.com/a.mp3"}, queue="audio_cpu",
                                  max_retries=2, request_id="r1").id


def test_stage_lifecycle(db_url: str) -> None:
    job_id = _create(db_url)
    with session_scope(db_url) as s:
        run = service.begin_stage(s, job_id, Stage.DOWNLOAD, worker_id="host:1", lease_seconds=60)
        assert run is not None and run.attempt == 1
        job = s.get(Job, job_id)
        assert job is not None and job.status == "processing" and job.stage == "audio_download"
        assert job.leased_until is not None and job.leased_until.tzinfo is not None
        started = job.started_at
        service.finish_stage(s, run.id)
    with session_scope(db_url) as s:
        run2 = service.begin_stage(s, job_id, Stage.DOWNLOAD, worker_id="host:2", lease_seconds=60)
        assert run2 is not None and run2.attempt == 2  # a re-delivered stage is a new attempt
        job = s.get(Job, job_id)
        assert job is not None and job.started_at == started
        service.fail_job(s, job_id, code="invalid_media", message="x" * 5000, run_id=run2.id)
    with session_scope(db_url) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.error_code, len(job.error_message or "")) == ("failed", "invalid_media", 2000)
        assert job.completed_at is not None and job.leased_until is None
        runs = s.query(StageRun).filter_by(job_id=job_id).order_by(StageRun.id).all()
        assert [r.status for r in runs] == ["succeeded", "failed"]
        # A final job starts nothing more and is not failed twice.
        assert service.begin_stage(s, job_id, Stage.CONVERT, worker_id="h", lease_seconds=60) is None
        service.fail_job(s, job_id, code="other", message="y")
        assert s.get(Job, job_id).error_code == "invalid_media"  # type: ignore[union-attr]


def test_retry_hands_job_back(db_url: str) -> None:
    job_id = _create(db_url)
    with session_scope(db_url) as s:
        run = service.begin_stage(s, job_id, Stage.DOWNLOAD, worker_id="h:1", lease_seconds=60)
        assert run is not None
        job = service.record_retry(s, job_id, run_id=run.id, code="transient_error", message="timeout")
        assert job is not None and (job.status, job.retry_count, job.worker_id) == ("queued", 1, None)


def test_queries(db_url: str) -> None:
    a1, _b1, a2 = _create(db_url, "a"), _create(db_url, "b"), _create(db_url, "a")
    with session_scope(db_url) as s:
        service.begin_stage(s, a2, Stage.DOWNLOAD, worker_id="h", lease_seconds=60)
    with session_scope(db_url) as s:
        assert [j.id for j in service.list_jobs(s, status=None, owner_user_id="a", limit=10)] == [a2, a1]
        assert service.count_by_status(s, owner_user_id=None)["queued"] == 2
        assert service.count_processing(s, "a") == 1
        assert service.final_job_ids(s, [a1, a2, 12345]) == {12345}
