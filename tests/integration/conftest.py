"""A real stack per test module and database: Redis, a migrated database, a Celery worker process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from audiojobs import create_app
from audiojobs.config import Settings
from audiojobs.migrate import upgrade
from tests.conftest import API_KEY, _redis_dbs
from tests.services import JFK_FLAC, PostgresServer, RedisServer, WorkerProcess

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    client: FlaskClient
    media_root: Path
    tmp: Path

    def start_worker(self, queues: str = "audio_cpu,audio_gpu", concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.tmp / f"worker-{queues.replace(',', '-')}.log", queues=queues,
                               concurrency=concurrency)
        worker.wait_ready()
        return worker


def stack_env(db_url: str, redis_url: str, tmp: Path, media_root: Path) -> dict[str, str]:
    from audiojobs.config import environ_with

    return environ_with({
        "AUDIOJOBS_VAR_DIR": str(tmp / "var"), "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "AUDIOJOBS_API_KEY": API_KEY, "AUDIO_LOCAL_ROOTS": str(media_root), "AUDIO_WORK_DIR": str(tmp / "work"),
        "AUDIO_DOWNLOAD_TIMEOUT": "5", "PYTHONUNBUFFERED": "1",
    })


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bare_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               test_redis: RedisServer) -> Iterator[Stack]:
    """Database, Redis, settings and API client, without a worker."""
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    media_root = tmp / "media"
    media_root.mkdir()
    shutil.copy(JFK_FLAC, media_root / "jfk.flac")
    pg: PostgresServer | None = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp / 'audiojobs.db'}"
    else:
        pg = request.getfixturevalue("postgres")
        db_url = pg.create_database()
    upgrade(db_url)
    redis_url = test_redis.url(next(_redis_dbs) % 15 + 1)
    redis_lib.Redis.from_url(redis_url).flushdb()
    env = stack_env(db_url, redis_url, tmp, media_root)
    settings = Settings.from_env(env)
    client = create_app(settings).test_client()
    yield Stack(settings=settings, env=env, client=client, media_root=media_root, tmp=tmp)
    if pg is not None:
        pg.drop_database(db_url)


@pytest.fixture(scope="module")
def stack(bare_stack: Stack) -> Iterator[Stack]:
    """The same, with one worker process consuming both audio queues."""
    worker = bare_stack.start_worker()
    yield bare_stack
    worker.stop()
