"""A stage's artifacts: named by attempt, recorded as current only under the attempt's fence, and
fetched from the store only by a host that does not hold the object already."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import ArtifactMissing
from audiojobs.jobs import recovery, service
from audiojobs.jobs.attempts import Attempt
from audiojobs.jobs.models import Job
from audiojobs.jobs.states import Stage
from audiojobs.pipeline.context import WAV_NAME, StageContext
from audiojobs.pipeline.guard import AttemptGuard
from tests.services import S3Server


def _begin(db_url: str, job_id: int, worker: str) -> Attempt:
    with session_scope(db_url) as s:
        decision = service.begin_stage(s, job_id, Stage.CONVERT, dispatch=1, worker_id=worker, lease_seconds=60,
                                       holder_is_dead=lambda _h: True)  # each takes over from the one before
    assert decision.attempt is not None
    return decision.attempt


def _ctx(settings: Settings, attempt: Attempt) -> StageContext:
    return StageContext(settings=settings, attempt=attempt, guard=AttemptGuard(settings, attempt))


def test_a_fenced_off_attempt_never_replaces_the_current_output(db_url: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": db_url, "AUDIO_WORK_DIR": str(tmp_path / "work")})
    with session_scope(db_url) as s:
        job_id = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=5, request_id=None).id
        s.get(Job, job_id).stage = Stage.CONVERT.value  # type: ignore[union-attr]
        recovery.mark_admitted(s, job_id)
    old, new = _begin(db_url, job_id, "host:1"), _begin(db_url, job_id, "host:2")
    old_ctx, new_ctx = _ctx(settings, old), _ctx(settings, new)
    for ctx, body in ((new_ctx, b"new"), (old_ctx, b"old")):  # the stale attempt writes last
        ctx.ensure_job_dir()
        ctx.path(WAV_NAME).write_bytes(body)
        ctx.publish(WAV_NAME, ctx.path(WAV_NAME))
    assert old_ctx.outputs[WAV_NAME] != new_ctx.outputs[WAV_NAME]  # beside it, never over it
    with session_scope(db_url) as s:
        assert service.finish_stage(s, new, outputs=new_ctx.outputs).moved_on
        assert not service.finish_stage(s, old, outputs=old_ctx.outputs).moved_on
    with session_scope(db_url) as s:
        current = s.get(Job, job_id).artifacts[WAV_NAME]  # type: ignore[union-attr]
    assert current == new_ctx.outputs[WAV_NAME] and current.endswith(f"/audio_convert/{new.fence}/audio.wav")
    assert new_ctx.store.get_bytes(current) == b"new"


def test_a_host_with_the_object_skips_the_fetch_and_another_fetches_it(tmp_path: Path, s3_env: S3Server) -> None:
    url = f"s3://audiojobs/ctx-{secrets.token_hex(3)}"

    def host(name: str) -> Settings:  # each "host" has its own scratch; they share the S3 store
        return Settings.from_env({"AUDIO_WORK_DIR": str(tmp_path / name), "AUDIO_STORAGE_URL": url,
                                  "AUDIO_S3_ENDPOINT_URL": s3_env.endpoint})

    job_uuid = "00000000-0000-4000-8000-00000000000a"
    convert = Attempt(job_id=1, stage=Stage.CONVERT, run_id=1, attempt=1, fence=2, dispatch=1, payload={},
                      started_at=utcnow(), job_uuid=job_uuid)
    writer = _ctx(host("cpu"), convert)
    writer.ensure_job_dir()
    writer.path(WAV_NAME).write_bytes(b"RIFF wav")
    key = writer.publish(WAV_NAME, writer.path(WAV_NAME))
    transcribe = Attempt(job_id=1, stage=Stage.TRANSCRIBE, run_id=2, attempt=1, fence=3, dispatch=1, payload={},
                         started_at=utcnow(), job_uuid=job_uuid, artifacts={WAV_NAME: key})
    fetched = _ctx(host("gpu"), transcribe).fetch(WAV_NAME)  # another host: from the store, into its scratch
    assert fetched.read_bytes() == b"RIFF wav" and fetched.is_relative_to(tmp_path / "gpu")
    writer.store.delete_prefix(key)  # from now on only the hosts' own copies hold it
    assert _ctx(host("cpu"), transcribe).fetch(WAV_NAME).read_bytes() == b"RIFF wav"  # the writer's copy
    assert _ctx(host("gpu"), transcribe).fetch(WAV_NAME) == fetched  # fetched once, kept
    with pytest.raises(ArtifactMissing):  # a host without a copy does go to the store
        _ctx(host("third"), transcribe).fetch(WAV_NAME)
