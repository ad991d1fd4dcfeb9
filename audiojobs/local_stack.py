"""``audiojobs up``: the whole system on one machine, as ``scripts/run-local`` starts it.

Redis (``REDIS_URL``, or an embedded one), migrations, then the API (gunicorn), a Celery worker
for both queues, celery beat and Flower, each a child process in its own session. A child that
dies is started again (see ``Supervisor``); Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from audiojobs import sizing
from audiojobs.config import Settings, environ_with, visible_cuda_devices
from audiojobs.embedded_redis import free_port, redis_command, wait_for_redis, write_url_file
from audiojobs.errors import ConfigError
from audiojobs.local_secrets import api_key_path, flower_auth_path, jwt_secret_path, read_or_create_secret
from audiojobs.migrate import upgrade
from audiojobs.pipeline.guard import host_identity

STOP_GRACE_SECONDS = 15.0
# A child that dies is started again after these delays (the n-th fast crash in a row waits the
# n-th); five fast crashes in a row (each within 10 s of its start) stop everything.
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
FAST_CRASH_SECONDS = 10.0
MAX_FAST_CRASHES = 5
# Celery reads this in the worker: SIGTERM then starts the soft shutdown (running stages get
# AUDIO_WORKER_SOFT_SHUTDOWN_SECONDS to finish, then go back to the broker) instead of waiting forever.
WORKER_ENV = {"REMAP_SIGTERM": "SIGQUIT", "CELERY_CUSTOM_WORKER_POOL": "audiojobs.threads_pool:TaskPool"}


@dataclass
class Child:
    """One supervised process: how to start it again, and its recent fast crashes."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    started_at: float
    fast_crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor:
    """Starts child processes, restarts one that dies (with backoff), and stops them all (newest
    first) on Ctrl-C or SIGTERM.

    A child that dies (the OOM killer's SIGKILL, a crash) is logged and started again after
    ``backoff[n]`` seconds, n being how many fast crashes (runs shorter than ``fast_seconds``) it
    had in a row; whatever it left running in its process group (a Celery worker's pool processes)
    is killed first. After ``max_fast_crashes`` fast crashes in a row it is not a blip but a broken
    setup: everything stops and ``wait`` returns the child's exit code.
    """

    def __init__(self, backoff: tuple[float, ...] = RESTART_BACKOFF, fast_seconds: float = FAST_CRASH_SECONDS,
                 max_fast_crashes: int = MAX_FAST_CRASHES, poll_seconds: float = 0.5) -> None:
        self.children: list[Child] = []
        self.backoff = backoff
        self.fast_seconds = fast_seconds
        self.max_fast_crashes = max_fast_crashes
        self.poll_seconds = poll_seconds
        self._stop_requested = threading.Event()
        self._supervising = False
        self._stopping = False

    def start(self, name: str, cmd: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        # A session of its own: the terminal's Ctrl-C reaches only us, and we stop children in order.
        proc = subprocess.Popen(cmd, env=dict(env), start_new_session=True)
        self.children.append(Child(name, list(cmd), dict(env), proc, time.monotonic()))
        return proc

    def request_stop(self) -> None:
        """Make ``wait`` stop everything and return 0 (what Ctrl-C and SIGTERM do)."""
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.request_stop()
            if not self._supervising:  # still starting up: abort whatever it waits for
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait(self) -> int:
        """Supervise until a stop is requested (0) or a child keeps crashing (its exit code)."""
        self._supervising = True
        try:
            while not self._stop_requested.wait(self.poll_seconds):
                for child in self.children:
                    code = self._check(child)
                    if code is not None:
                        return code
            print("\naudiojobs: stopping …", file=sys.stderr, flush=True)
            return 0
        finally:
            self.stop_all()

    def _check(self, child: Child) -> int | None:
        """Notice a death, or restart when its backoff is over; an exit code when giving up."""
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.proc = subprocess.Popen(child.cmd, env=child.env, start_new_session=True)
                child.started_at, child.restart_at = now, None
                print(f"audiojobs: {child.name} restarted (pid {child.proc.pid})", file=sys.stderr, flush=True)
            return None
        code = child.proc.poll()
        if code is None:
            return None
        _signal_group(child.proc, signal.SIGKILL)  # what it left behind (pool processes) goes with it
        if now - child.started_at < self.fast_seconds:
            child.fast_crashes.append(now)
        else:
            child.fast_crashes.clear()
        crashes = len(child.fast_crashes)
        if crashes >= self.max_fast_crashes:
            print(f"audiojobs: {child.name} exited with code {code}, {crashes} times in a row within "
                  f"{self.fast_seconds:.0f} s of starting; giving up and stopping everything", file=sys.stderr,
                  flush=True)
            return code or 1
        delay = self.backoff[min(max(crashes - 1, 0), len(self.backoff) - 1)]
        child.restart_at = now + delay
        print(f"audiojobs: {child.name} exited with code {code}; restarting it in {delay:g} s", file=sys.stderr,
              flush=True)
        return None

    def stop_all(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        live = [c.proc for c in reversed(self.children) if c.restart_at is None]
        for proc in live:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


def celery_cmd(*args: str) -> list[str]:
    return python_cmd("-m", "celery", "-A", "audiojobs.worker", *args)


def node_name(name: str) -> str:
    """A Celery node name unique to this host: ``NAME@%h`` becomes ``NAME-ID@%h``, ID a short digest of
    the host's boot id and PID namespace, so containers sharing a hostname stay apart in Flower.
    Other names (``-n w1@gpu-3``) are the operator's and are left as they are."""
    if not name.endswith("@%h"):
        return name
    return f"{name[:-3]}-{hashlib.sha256(host_identity().encode()).hexdigest()[:6]}@%h"


def worker_cmd(settings: Settings, concurrency: int | None = None, hostname: str = "audiojobs@%h",
               queues: str | None = None) -> list[str]:
    """``celery worker`` on ``queues`` (default: control, CPU and transcription), its pool sized
    from the cores (sizing.py): a batching threads pool when it transcribes, else prefork."""
    hostname = node_name(hostname)
    queues = queues or ",".join(dict.fromkeys([settings.control_queue, settings.cpu_queue,
                                               settings.transcribe_queue]))
    shape = sizing.plan(settings, queues.split(","), concurrency, gpus=len(detect_gpus(settings)))
    return celery_cmd("worker", "-Q", queues, "-P", pool_arg(shape.pool), "-c", str(shape.concurrency),
                      "-n", hostname, "--loglevel", settings.log_level.upper())


def pool_arg(pool: str) -> str:
    """``-P``: prefork, or Celery's threads pool able to stop its tasks (threads_pool.py; Celery
    takes a pool of its own only as ``custom``, named by ``CELERY_CUSTOM_WORKER_POOL`` in WORKER_ENV)."""
    return "custom" if pool == "threads" else pool


def detect_gpus(settings: Settings, visible: str | None = None) -> tuple[str, ...]:
    """GPU ids for gpu-worker: AUDIO_GPU_DEVICES, else CUDA_VISIBLE_DEVICES, else what nvidia-smi lists.
    Nothing found: no GPU (the worker runs on the CPU, sized from its cores). Never initialises CUDA here."""
    import subprocess

    if settings.gpu_devices:
        return settings.gpu_devices
    visible = visible if visible is not None else visible_cuda_devices()
    if visible is not None:
        return tuple(d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU "))


def gpu_worker_cmd(settings: Settings, gpus: tuple[str, ...], hostname: str = "audiojobs-gpu@%h") -> list[str]:
    """A worker on the transcribe queue only: batching, a threads pool on one GPU (or on the CPU
    when there is none); without batching, prefork with one pool process per GPU."""
    hostname = node_name(hostname)
    shape = sizing.plan(settings, [settings.transcribe_queue], gpus=len(gpus))
    return celery_cmd("worker", "-Q", settings.transcribe_queue, "-P", pool_arg(shape.pool), "-c",
                      str(shape.concurrency),
                      "-n", hostname, "--loglevel", settings.log_level.upper())


def api_cmd(settings: Settings) -> list[str]:
    return python_cmd("-m", "gunicorn", "audiojobs.wsgi:app", "--bind", f"{settings.api_host}:{settings.api_port}",
                      "--workers", str(settings.api_workers), "--timeout", "60", "--graceful-timeout", "10",
                      # Requests are logged by the app (audiojobs.access), with their request_id.
                      "--log-level", settings.log_level,
                      # gunicorn's control socket defaults to one path per user: two APIs would clash.
                      "--no-control-socket")


def beat_cmd(settings: Settings) -> list[str]:
    return celery_cmd("beat", "--schedule", str(settings.var_path / "celerybeat-schedule"),
                      "--loglevel", settings.log_level.upper())


def flower_cmd(settings: Settings, basic_auth: str) -> list[str]:
    cmd = celery_cmd("flower", f"--address={settings.flower_address}", f"--port={settings.flower_port}",
                     f"--basic-auth={basic_auth}")
    if settings.flower_url_prefix:
        cmd.append(f"--url_prefix={settings.flower_url_prefix.strip('/')}")
    return cmd


def default_local_roots(settings: Settings, repo_root: Path, with_home: bool = False) -> tuple[str, ...]:
    """run-local's roots when AUDIO_LOCAL_ROOTS is unset: var/inbox and the sample audio; your home
    directory only when asked (``--with-home``)."""
    roots = [str(settings.var_path / "inbox")]
    home = Path.home()
    if with_home and home.is_dir() and home != Path("/"):
        roots.append(str(home))
    samples = (repo_root.parent / "shared" / "fixtures" / "audio").resolve()
    if samples.is_dir():
        roots.append(str(samples))
    return tuple(roots)


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the API exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ConfigError(f"the API did not answer at {url} within {timeout:.0f} s")


def run_up(settings: Settings, repo_root: Path, with_home: bool = False) -> int:
    var = settings.var_path
    var.mkdir(parents=True, exist_ok=True)
    sup = Supervisor()
    sup.install_signal_handlers()
    env: dict[str, str] = {"AUDIOJOBS_VAR_DIR": str(var), "PYTHONUNBUFFERED": "1"}
    try:
        if settings.redis_url:
            redis_url, redis_note = settings.redis_url, "REDIS_URL"
        else:
            port = settings.embedded_redis_port or free_port()
            sup.start("redis", redis_command(var / "redis", port, persist=True), environ_with({}))
            redis_url, redis_note = f"redis://127.0.0.1:{port}/0", "embedded, data in var/redis"
        wait_for_redis(redis_url)
        if not settings.redis_url:
            write_url_file(var, redis_url)
        env["REDIS_URL"] = redis_url

        api_key = settings.api_key or read_or_create_secret(api_key_path(var))
        key_note = "AUDIOJOBS_API_KEY" if settings.api_key else f"kept in {api_key_path(var)}"
        flower_auth = settings.flower_basic_auth or read_or_create_secret(flower_auth_path(var), make="userpass")
        roots = settings.local_roots or default_local_roots(settings, repo_root, with_home)
        for root in roots:
            if root.startswith(str(var)):
                Path(root).mkdir(parents=True, exist_ok=True)
        env.update(AUDIOJOBS_API_KEY=api_key, FLOWER_BASIC_AUTH=flower_auth, AUDIO_LOCAL_ROOTS=":".join(roots))
        if settings.auth_mode == "multi_user":
            env["AUDIOJOBS_JWT_SECRET"] = settings.jwt_secret or read_or_create_secret(jwt_secret_path(var))
        db_url = settings.effective_database_url
        env["DATABASE_URL"] = db_url
        upgrade(db_url)

        child_env = environ_with(env)
        settings = dataclasses.replace(settings, redis_url=redis_url, api_key=api_key, local_roots=roots)
        api = sup.start("api", python_cmd("-m", "audiojobs.cli", "api"), child_env)
        if not settings.worker_enabled:  # else the API service runs the worker itself
            sup.start("worker", worker_cmd(settings, hostname="audiojobs-local@%h"), {**child_env, **WORKER_ENV})
        sup.start("beat", beat_cmd(settings), child_env)
        sup.start("flower", flower_cmd(settings, flower_auth), child_env)
        base = f"http://{settings.api_host}:{settings.api_port}"
        wait_for_http(f"{base}/healthz", 60, api)
    except BaseException:
        sup.stop_all()
        raise
    print(banner(settings, base, redis_note, key_note, flower_auth, roots, db_url), flush=True)
    return sup.wait()


def banner(settings: Settings, base: str, redis_note: str, key_note: str, flower_auth: str,
           roots: tuple[str, ...], db_url: str) -> str:
    sample = next((str(Path(r) / "jfk.flac") for r in roots if (Path(r) / "jfk.flac").is_file()),
                  str(Path(roots[0]) / "your-file.mp3") if roots else "/path/to/audio.mp3")
    user, _, password = flower_auth.partition(":")
    if settings.auth_mode == "multi_user":
        return "\n".join([
            "", "audiojobs is up (AUTH_MODE=multi_user). Ctrl-C stops everything.",
            f"  API            {base}/api/v1/audio   (log in at {base}/api/v1/auth/login)",
            f"  Local roots    {':'.join(roots)}   (AUDIO_LOCAL_ROOTS)",
            f"  Flower         http://127.0.0.1:{settings.flower_port}   (user {user}, password {password})",
            f"  Redis          {settings.redis_url}   ({redis_note})",
            f"  Database       {db_url}",
            "",
            "Create a user and a key in another terminal:",
            "  .venv/bin/audiojobs users create alice --tier standard",
            "  .venv/bin/audiojobs keys create alice",
            "",
        ])
    return "\n".join([
        "",
        "audiojobs is up. Ctrl-C stops everything.",
        f"  API            {base}/api/v1/audio",
        f"  API key        {settings.api_key}   ({key_note})",
        f"  Local roots    {':'.join(roots)}   (AUDIO_LOCAL_ROOTS)",
        f"  Flower         http://127.0.0.1:{settings.flower_port}   (user {user}, password {password})",
        f"  Redis          {settings.redis_url}   ({redis_note})",
        f"  Database       {db_url}",
        f"  Work dir       {settings.work_path}",
        "",
        "Submit a file and read its transcript:",
        f"  curl -s -X POST {base}/api/v1/audio/jobs/submit -H 'X-API-KEY: {settings.api_key}' "
        f"-H 'Content-Type: application/json' -d '{{\"local_path\": \"{sample}\"}}'",
        f"  curl -s {base}/api/v1/audio/jobs/1 -H 'X-API-KEY: {settings.api_key}'",
        f"  curl -s {base}/api/v1/audio/jobs/1/result -H 'X-API-KEY: {settings.api_key}'",
        "",
    ])
