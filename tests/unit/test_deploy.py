"""docker-compose.yml and the Dockerfiles: valid for docker-compose, and every command they run is a
real ``audiojobs`` CLI entry point whose options parse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from audiojobs.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`docker-compose config` of the file, with .env.example as the .env an operator copies."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/test installs Debian's package when it can)")
    work = tmp_path_factory.mktemp("compose")
    shutil.copy(ROOT / "docker-compose.yml", work / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", work / ".env")
    out = subprocess.run([binary, "--profile", "gpu", "config"], cwd=work, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def _entrypoint(dockerfile: Path) -> list[str]:
    line = next(x for x in dockerfile.read_text().splitlines() if x.startswith("ENTRYPOINT"))
    return list(json.loads(line.removeprefix("ENTRYPOINT").strip()))


def _parse(args: list[str]) -> list[str]:
    """Resolve ``audiojobs ARGS`` down to its command and parse its options, without running it;
    the names of the commands resolved."""
    names = []
    command: click.Command = main
    rest = list(args)
    while isinstance(command, click.Group):  # our groups take no options: the next word is the command
        name, rest = rest[0], rest[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"no command {name!r} in {args}"
        names.append(name)
        command = sub
    command.make_context(names[-1], rest)  # raises on an unknown option or a bad value
    return names


def test_compose_has_the_whole_stack(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "minio", "create-bucket", "migrate", "api", "cpu-worker",
                             "gpu-worker", "beat", "flower"}
    assert "--appendonly" in services["redis"]["command"] and "pg-data" in compose["volumes"]
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    device = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["gpu-worker"]["build"]["dockerfile"] == "gpu/Dockerfile"
    for name in ("redis", "postgres", "api", "cpu-worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["audiojobs", "db", "upgrade"]
    for name in ("api", "cpu-worker", "beat", "flower", "gpu-worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"


def test_compose_app_services_share_only_network_services(compose: dict) -> None:
    """Redis, PostgreSQL and the object store (MinIO, its bucket made by a one-shot): no disk is shared
    between app services but the read-only inbox of local_path, so each can move to a host of its own."""
    services = compose["services"]
    assert services["minio"]["healthcheck"]["test"] and "minio-data" in compose["volumes"]
    assert "mc mb --ignore-existing store/audiojobs" in " ".join(services["create-bucket"]["entrypoint"])
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("api", "cpu-worker", "gpu-worker", "beat", "flower", "migrate"):
        env = services[name]["environment"]
        assert env["AUDIO_STORAGE_URL"] == "s3://audiojobs/jobs-data", name
        assert env["AUDIO_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"], name  # from .env
        mounts = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[name].get("volumes", [])]
        assert "/data/work" not in mounts, name  # scratch stays inside each container
    assert services["cpu-worker"]["healthcheck"]["test"] == ["CMD", "audiojobs", "ping-worker"]
    _parse(["ping-worker"])
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"]  # authenticated
    assert "scale" not in services["cpu-worker"] and "container_name" not in services["cpu-worker"]  # scalable


def test_every_service_runs_a_real_cli_entry_point(compose: dict) -> None:
    entrypoints = {"gpu-worker": _entrypoint(ROOT / "gpu" / "Dockerfile")}
    ran = {}
    for name, service in compose["services"].items():
        if "build" not in service:
            continue  # redis, postgres: upstream images
        argv = entrypoints.get(name, []) + list(service["command"])
        assert argv[0] == "audiojobs", (name, argv)
        ran[name] = _parse(argv[1:])
    assert ran == {"migrate": ["db", "upgrade"], "api": ["api"], "cpu-worker": ["worker"],
                   "gpu-worker": ["gpu-worker"], "beat": ["beat"], "flower": ["flower"]}
    assert _entrypoint(ROOT / "gpu" / "Dockerfile") == ["audiojobs", "gpu-worker"]
    cmd = (ROOT / "Dockerfile").read_text().splitlines()[-1]
    assert _parse(json.loads(cmd.removeprefix("CMD").strip())[1:]) == ["api"]


def test_the_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "audiojobs"
    assert exe.is_file(), "pip install -e . puts the audiojobs console script on PATH"
    out = subprocess.run([str(exe), "gpu-worker", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--max-tasks-per-child" in out.stdout
