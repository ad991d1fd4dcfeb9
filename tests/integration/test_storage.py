"""Jobs through a real S3 store (``rclone serve s3``): every artifact between stages is an object
there, uploads go straight into it, and a finished job leaves nothing behind."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import Job, StageRun, Transcript
from audiojobs.storage import open_store
from tests.conftest import AUTH, _redis_dbs, wait_for_job, word_error_rate
from tests.integration.conftest import build_stack
from tests.services import JFK_FLAC, JFK_TEXT, MediaServer, PostgresServer, RedisServer, S3Server

pytestmark = pytest.mark.integration
SUBMIT = "/api/v1/audio/jobs/submit"


def test_jobs_move_through_an_s3_store_and_leave_nothing(tmp_path: Path, test_redis: RedisServer,
                                                        postgres: PostgresServer, s3_env: S3Server) -> None:
    prefix = f"e2e-{secrets.token_hex(3)}"
    extra = {**s3_env.env, "AUDIO_STORAGE_URL": f"s3://audiojobs/{prefix}"}
    with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                     extra_env=extra) as stack:
        site = tmp_path / "site"
        site.mkdir()
        shutil.copy(JFK_FLAC, site / "jfk.flac")
        server = MediaServer(site, port=stack.media_port)
        bucket_dir = s3_env.data_dir / "audiojobs" / prefix
        try:
            ids = {
                "local_path": stack.client.post(SUBMIT, headers=AUTH,
                                                json={"local_path": str(stack.media_root / "jfk.flac")}),
                "url": stack.client.post(SUBMIT, headers=AUTH, json={"url": server.url("jfk.flac")}),
            }
            job_ids = {kind: int(resp.get_json()["id"]) for kind, resp in ids.items()}
            job_ids["upload"] = stack.upload("speech.flac", JFK_FLAC.read_bytes())
            # The API put the upload into the S3 store, not on any disk of its own.
            uploaded = [p for p in bucket_dir.rglob("*") if p.is_file()]
            assert [p.name for p in uploaded] == ["source.flac"] and "/upload/0/" in str(uploaded[0])
            assert not (stack.settings.work_path / "jobs").exists()
            worker = stack.start_worker()
            try:
                # The container health check: this host's worker, under the node name it really has.
                ping = [sys.executable, "-m", "audiojobs.cli", "ping-worker", "--timeout", "3"]
                answered = subprocess.run([*ping, "-n", worker.name], env=stack.env, capture_output=True,
                                          text=True, timeout=60)
                assert answered.returncode == 0 and answered.stdout.endswith(": pong\n"), answered.stderr
                silent = subprocess.run([*ping, "-n", "nobody@%h"], env=stack.env, capture_output=True, text=True,
                                        timeout=60)
                assert silent.returncode == 1 and "did not answer within 3 s" in silent.stderr
                for kind, job_id in job_ids.items():
                    job = wait_for_job(stack.client, job_id, timeout=120)
                    assert job["status"] == "completed", (kind, job)
                    result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
                    assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1, kind
                    assert stack.leftovers(job_id) == [], kind
            finally:
                worker.stop()
        finally:
            server.stop()
        assert list(open_store(stack.settings).list_objects("")) == []  # nothing left in the store
        assert not [p for p in bucket_dir.rglob("*") if p.is_file()]
        assert not [p for p in stack.settings.scratch_path.rglob("*") if p.is_file()]  # nor in scratch


def test_a_store_outage_of_ten_seconds_loses_nothing_and_does_nothing_twice(
        tmp_path: Path, test_redis: RedisServer, postgres: PostgresServer, s3_env: S3Server) -> None:
    outage = S3Server(tmp_path / "s3")  # a server of this test's own, to stop
    extra = {**outage.env, "AUDIO_STORAGE_URL": "s3://audiojobs/outage"}
    try:
        with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                         extra_env=extra) as stack:
            worker, beat = stack.start_worker(), stack.start_beat()
            try:
                job_ids = [int(stack.client.post(SUBMIT, headers=AUTH, json={
                    "local_path": str(stack.media_root / "jfk.flac")}).get_json()["id"]) for _ in range(8)]
                wait_for_job(stack.client, job_ids[0], timeout=60, until=lambda b: b["status"] == "processing")
                outage.stop()
                time.sleep(10)
                outage.start()
                for job_id in job_ids:
                    wait_for_job(stack.client, job_id, timeout=180)
            finally:
                beat.stop()
                worker.stop()
            with session_scope(stack.settings.effective_database_url) as session:
                jobs = list(session.scalars(sa.select(Job).where(Job.id.in_(job_ids))))
                results = dict(session.execute(sa.select(Transcript.job_id, sa.func.count())
                                               .where(Transcript.job_id.in_(job_ids)).group_by(Transcript.job_id))
                               .all())
                done = session.execute(sa.select(StageRun.job_id, StageRun.stage, sa.func.count()).where(
                    StageRun.job_id.in_(job_ids), StageRun.status.in_(["succeeded", "skipped"]))
                    .group_by(StageRun.job_id, StageRun.stage)).all()
            met_outage = sum(1 for j in jobs if any(e["code"] == "storage_unavailable" for e in j.attempt_errors))
            tally = {"submitted": len(job_ids),
                     "completed": sum(1 for j in jobs if j.status == "completed" and results.get(j.id) == 1),
                     "lost": sum(1 for j in jobs if j.status != "completed" or not results.get(j.id)),
                     "duplicated": sum(1 for j in jobs if results.get(j.id, 0) > 1)
                     + sum(1 for _job, _stage, count in done if count > 1)}
            print(f"\nS3 store stopped for 10 s with 8 jobs in flight ({met_outage} met it): "
                  + " / ".join(f"{k} {v}" for k, v in tally.items()))
            assert tally == {"submitted": 8, "completed": 8, "lost": 0, "duplicated": 0}
            assert met_outage >= 1
            assert all(j.retry_count == 0 for j in jobs)  # an outage of the store spends no retry
            assert list(open_store(stack.settings).list_objects("")) == []
    finally:
        outage.stop()


def test_a_misconfigured_store_fails_the_job_at_once_naming_the_setting(
        tmp_path: Path, test_redis: RedisServer, postgres: PostgresServer, s3_env: S3Server) -> None:
    extra = {**s3_env.env, "AUDIO_STORAGE_URL": "s3://no-such-bucket/x"}
    with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                     extra_env=extra) as stack:
        ready = stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["storage"] == "misconfigured"
        worker = stack.start_worker()
        try:
            job_id = int(stack.client.post(SUBMIT, headers=AUTH, json={
                "local_path": str(stack.media_root / "jfk.flac")}).get_json()["id"])
            job = wait_for_job(stack.client, job_id, timeout=60)
        finally:
            worker.stop()
    assert (job["status"], job["error_code"], job["stage"]) == ("failed", "storage_misconfigured", "audio_download")
    assert "AUDIO_STORAGE_URL" in job["error_message"] and "no-such-bucket" in job["error_message"]
    assert job["retry_count"] == 0  # not retried: another try would not change it
