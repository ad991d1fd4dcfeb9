"""audio_store writes results once, in one transaction, and removes the job's objects and scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import recovery, service
from audiojobs.jobs.models import Analysis, Job, Transcript, TranscriptChunk
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import store
from audiojobs.pipeline.context import ANALYSIS_NAME, CHUNKS_NAME, TRANSCRIPT_NAME, Outcome, StageContext
from audiojobs.pipeline.guard import AttemptGuard, AttemptStopped
from audiojobs.storage import artifact_key, job_prefix, open_store

TRANSCRIPT = {"language": "en", "duration": 11.0, "model": "tiny.en", "text": "Ask not.",
              "segments": [{"id": 0, "start": 0.0, "end": 11.0, "text": " Ask not."}]}


ARTIFACTS = {TRANSCRIPT_NAME: TRANSCRIPT, CHUNKS_NAME: [{"index": 0, "text": "Ask not.", "start": 0.0, "end": 11.0}],
             ANALYSIS_NAME: {"provider": "local", "model": None, "summary": "Ask not.", "key_phrases": ["ask"]}}


def _store_artifacts(settings: Settings, job_id: int, job_uuid: str) -> None:
    """What the earlier stages stored and the job recorded as current."""
    for name, data in ARTIFACTS.items():
        key = artifact_key(job_uuid, "audio_analyze", 1, name)
        open_store(settings).put_bytes(key, json.dumps(data).encode())
        with session_scope(settings.effective_database_url) as s:
            service.record_artifact(s, job_id, name, key)


def _prepared(db_url: str, tmp_path: Path) -> StageContext:
    settings = Settings.from_env({"DATABASE_URL": db_url, "AUDIO_WORK_DIR": str(tmp_path / "work")})
    with session_scope(db_url) as s:
        job = service.create_job(s, owner_user_id="1", payload={"local_path": "/m/a.flac"}, queue="audio_cpu",
                                 max_retries=3, request_id=None)
        job_id, job_uuid = job.id, job.uuid
        job.stage = Stage.STORE.value
        recovery.mark_admitted(s, job_id)
    _store_artifacts(settings, job_id, job_uuid)
    with session_scope(db_url) as s:
        started = service.begin_stage(s, job_id, Stage.STORE, dispatch=1, worker_id="w", lease_seconds=60,
                                      holder_is_dead=lambda _h: False)
        assert started.attempt is not None
    ctx = StageContext(settings=settings, attempt=started.attempt, guard=AttemptGuard(settings, started.attempt))
    ctx.ensure_job_dir()  # a scratch copy on this host, to be removed with the job's objects
    return ctx


def _counts(db_url: str, job_id: int) -> tuple[int, int, int]:
    with session_scope(db_url) as s:
        return tuple(s.scalar(sa.select(sa.func.count()).select_from(m).where(m.job_id == job_id))  # type: ignore
                     for m in (Transcript, TranscriptChunk, Analysis))


def test_store_completes_once_and_removes_work_dir(db_url: str, tmp_path: Path) -> None:
    ctx = _prepared(db_url, tmp_path)
    assert store.run(ctx) is Outcome.FINISHED
    assert _counts(db_url, ctx.job_id) == (1, 1, 1)
    assert not ctx.job_dir.exists()
    assert list(ctx.store.list_objects(job_prefix(ctx.attempt.job_uuid))) == []  # the objects went too
    with session_scope(db_url) as s:
        job = s.get(Job, ctx.job_id)
        assert job is not None and job.status == "completed" and job.completed_at is not None
        assert [r.status for r in job.stage_runs] == ["succeeded"]
    # The same attempt again (or a stale one, whose objects were still there) finds the job final
    # and writes nothing more.
    _store_artifacts(ctx.settings, ctx.job_id, ctx.attempt.job_uuid)
    with pytest.raises(AttemptStopped, match="completed"):
        store.run(ctx)
    assert _counts(db_url, ctx.job_id) == (1, 1, 1)


def test_store_replaces_partial_results_of_an_earlier_attempt(db_url: str, tmp_path: Path) -> None:
    ctx = _prepared(db_url, tmp_path)
    with session_scope(db_url) as s:  # an earlier attempt that died after writing, before committing its state
        s.add(TranscriptChunk(job_id=ctx.job_id, chunk_index=5, text="stale", start_seconds=0, end_seconds=1))
    assert store.run(ctx) is Outcome.FINISHED
    assert _counts(db_url, ctx.job_id) == (1, 1, 1)
