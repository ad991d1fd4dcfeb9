"""A real stack per test module and database: Redis, a migrated database, a Celery worker process."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.embedded_redis import free_port
from audiojobs.jobs.models import Job
from audiojobs.migrate import upgrade
from tests.conftest import API_KEY, NO_RATE_LIMITS, _redis_dbs
from tests.services import JFK_FLAC, BeatProcess, PostgresServer, RedisServer, WorkerProcess

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    client: FlaskClient
    media_root: Path
    tmp: Path
    media_port: int  # the one port of 127.0.0.1 the URL guard lets this stack's workers reach

    def start_worker(self, queues: str = "audio_control,audio_cpu,audio_gpu", concurrency: int = 1,
                     app: str | None = None, env: dict[str, str] | None = None, gpu: bool = False) -> WorkerProcess:
        log = self.tmp / ("gpu-worker.log" if gpu else f"worker-{queues.replace(',', '-')}.log")
        worker = WorkerProcess({**self.env, **(env or {})}, log, queues=queues, concurrency=concurrency, app=app,
                               gpu=gpu)
        worker.wait_ready()
        return worker

    def start_beat(self, env: dict[str, str] | None = None) -> BeatProcess:
        return BeatProcess({**self.env, **(env or {})}, self.tmp / "beat.log")

    def upload(self, name: str, data: bytes) -> int:
        """Submit ``data`` as a multipart upload named ``name``; the new job's id."""
        from werkzeug.test import EnvironBuilder

        # Built by hand so the encoded body (a temporary file above 500 KB) is closed when done.
        builder = EnvironBuilder(path="/api/v1/audio/jobs/submit", method="POST", headers={"X-API-KEY": API_KEY},
                                 content_type="multipart/form-data", data={"file": (io.BytesIO(data), name)})
        environ = builder.get_environ()
        try:
            resp = self.client.open(environ)
        finally:
            environ["wsgi.input"].close()
            builder.close()
        assert resp.status_code == 202, resp.get_json()
        return int(resp.get_json()["id"])

    def leftovers(self, job_id: int) -> list[str]:
        """What job ``job_id`` still has: its objects in the store and this host's scratch directory."""
        from audiojobs.storage import job_prefix, job_scratch_dir, open_store

        with session_scope(self.settings.effective_database_url) as session:
            job_uuid = session.scalar(sa.select(Job.uuid).where(Job.id == job_id))
        assert job_uuid is not None
        found = [key for key, _when in open_store(self.settings).list_objects(job_prefix(job_uuid))]
        scratch = job_scratch_dir(self.settings, job_uuid)
        return found + ([str(scratch)] if scratch.exists() else [])


def stack_env(db_url: str, redis_url: str, tmp: Path, media_root: Path) -> dict[str, str]:
    from audiojobs.config import environ_with

    return environ_with({
        "AUDIOJOBS_VAR_DIR": str(tmp / "var"), "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "AUDIOJOBS_API_KEY": API_KEY, "AUDIO_LOCAL_ROOTS": str(media_root), "AUDIO_WORK_DIR": str(tmp / "work"),
        "AUDIO_DOWNLOAD_TIMEOUT": "5", "PYTHONUNBUFFERED": "1", "AUDIO_REAPER_INTERVAL_SECONDS": "1",
        # The long clips here exist to catch a stage mid-transcription (cancel, SIGKILL, SIGTERM);
        # decoded in batches they would be done in seconds. Batching has its own tests
        # (tests/unit/transcription/test_backends.py, the benchmark smoke run).
        "AUDIO_WHISPER_BATCH_SIZE": "0",
        **NO_RATE_LIMITS,
    })


@contextlib.contextmanager
def build_stack(kind: str, tmp: Path, redis_url: str, postgres: PostgresServer | None,
                admin_url: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Database (fresh, migrated), Redis database (flushed), settings and API client; no processes."""
    media_root = tmp / "media"
    media_root.mkdir(exist_ok=True)
    shutil.copy(JFK_FLAC, media_root / "jfk.flac")
    pg = postgres
    if kind == "sqlite":
        db_url = f"sqlite:///{tmp / 'audiojobs.db'}"
    else:
        if admin_url is not None:
            pg = PostgresServer(tmp, admin_url=admin_url)
        assert pg is not None
        db_url = pg.create_database()
    upgrade(db_url)
    redis_lib.Redis.from_url(redis_url).flushdb()
    media_port = free_port()
    extra = dict(extra_env or {})
    allow = ",".join(filter(None, [f"127.0.0.1:{media_port}", extra.pop("AUDIO_URL_ALLOW_HOSTS", "")]))
    env = {**stack_env(db_url, redis_url, tmp, media_root), "AUDIO_URL_ALLOW_HOSTS": allow, **extra}
    settings = Settings.from_env(env)
    client = create_app(settings).test_client()
    try:
        yield Stack(settings=settings, env=env, client=client, media_root=media_root, tmp=tmp, media_port=media_port)
    finally:
        if pg is not None and admin_url is None:  # a private server is thrown away whole
            pg.drop_database(db_url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bare_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               test_redis: RedisServer) -> Iterator[Stack]:
    """Database, Redis, settings and API client, without a worker; once per database."""
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    pg = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    with build_stack(request.param, tmp, test_redis.url(next(_redis_dbs) % 15 + 1), pg) as stack:
        yield stack


@pytest.fixture(scope="module")
def stack(bare_stack: Stack) -> Iterator[Stack]:
    """The same, with one worker process consuming every audio queue, and beat running the reaper."""
    worker = bare_stack.start_worker()
    beat = bare_stack.start_beat()
    yield bare_stack
    beat.stop()
    worker.stop()
