"""Real services for the tests: a private Redis, PostgreSQL databases, Celery worker processes."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg2
import redis as redis_lib
from psycopg2 import sql

from audiojobs.embedded_redis import free_port, redis_server_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("AUDIOJOBS_FIXTURES_DIR", REPO_ROOT.parent / "shared" / "fixtures" / "audio"))
JFK_FLAC = FIXTURES / "jfk.flac"
JFK_TEXT = (FIXTURES / "jfk.txt").read_text().strip() if (FIXTURES / "jfk.txt").exists() else ""


class RedisServer:
    """A redis-server of the tests' own, on a free loopback port, that a test may stop and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
               "--appendonly", "no", "--dir", str(self.data_dir), "--protected-mode", "yes"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_lib.Redis.from_url(self.url(), socket_connect_timeout=0.2).ping()
                return
            except redis_lib.RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError("test redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class PostgresServer:
    """Where the tests' PostgreSQL databases live; each test module gets a fresh database."""

    def __init__(self, tmp_dir: Path) -> None:
        self.admin_url = os.environ.get("AUDIOJOBS_TEST_PG_URL", "")
        self._pgserver = None
        if not self.admin_url:
            if _port_open("127.0.0.1", 5432):
                self.admin_url = "postgresql://127.0.0.1:5432/test"
            else:
                import pgserver  # a PostgreSQL server in a wheel, for machines that have none

                self._pgserver = pgserver.get_server(str(tmp_dir / "pgdata"), cleanup_mode="stop")
                self.admin_url = self._pgserver.get_uri()

    def _admin(self):  # type: ignore[no-untyped-def]
        conn = psycopg2.connect(self.admin_url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        return conn

    def create_database(self) -> str:
        name = f"audiojobs_test_{secrets.token_hex(4)}"
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.close()
        return _with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        from audiojobs.db import _engines

        engine = _engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.close()

    def stop(self) -> None:
        if self._pgserver is not None:
            self._pgserver.cleanup()


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)


class WorkerProcess:
    """A real ``celery worker`` subprocess of audiojobs, with its log kept for failures."""

    def __init__(self, env: Mapping[str, str], log_path: Path, queues: str = "audio_cpu,audio_gpu",
                 concurrency: int = 1, name: str | None = None) -> None:
        self.log_path = log_path
        self.name = name or f"test-{secrets.token_hex(3)}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", "audiojobs.worker", "worker", "-Q", queues, "-c",
               str(concurrency), "-n", self.name, "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._log.close()


class MediaServer:
    """A loopback HTTP server for a directory of test media (stands in for a remote site).

    ``fail_first={"name": n}`` answers the first ``n`` requests for ``/name`` with 503.
    """

    def __init__(self, directory: Path, fail_first: dict[str, int] | None = None) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        failures = dict(fail_first or {})
        lock = threading.Lock()
        self.requests: list[str] = []

        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def send_head(self):  # type: ignore[no-untyped-def]
                name = self.path.lstrip("/").split("?", 1)[0]
                with lock:
                    outer.requests.append(name)
                    failing = failures.get(name, 0) > 0
                    if failing:
                        failures[name] -= 1
                if failing:
                    self.send_error(503, "try later")
                    return None
                return super().send_head()

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
