from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from audiojobs.checks import check_settings
from audiojobs.config import Settings, environ_with, setting_table
from audiojobs.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.auth_mode == "single_user"
    assert s.worker_enabled is False and s.owner_strict is False
    assert s.lease_seconds == 120
    assert s.local_roots == ()
    assert s.transcribe_queue == "audio_gpu" and s.cpu_queue == "audio_cpu"
    assert s.default_model == "tiny.en"
    assert s.redis_url is None
    assert s.effective_database_url == f"sqlite:///{Path('var').resolve() / 'audiojobs.db'}"
    assert s.work_path == Path("var").resolve() / "work"
    assert s.broker_visibility_timeout > s.transcribe_time_limit


def test_env_overrides_and_parsing() -> None:
    s = Settings.from_env({"AUDIO_JOBS_WORKER_ENABLED": "TRUE", "AUDIO_JOBS_OWNER_STRICT": "1",
                           "JOBS_LEASE_SECONDS": "300", "AUDIO_LOCAL_ROOTS": "/a:/b/c::",
                           "AUDIO_TRANSCRIBE_QUEUE": "gq",
                           "DATABASE_URL": "postgresql://x/y", "AUDIO_ALLOWED_MODELS": "tiny.en, base"})
    assert s.worker_enabled and s.owner_strict and s.lease_seconds == 300
    assert s.local_roots == ("/a", "/b/c")
    assert s.transcribe_queue == "gq"
    assert s.effective_database_url == "postgresql://x/y"
    assert s.model_names == {"whisper-1", "tiny.en", "base"}


@pytest.mark.parametrize("env", [{"AUDIO_JOBS_WORKER_ENABLED": "maybe"}, {"JOBS_LEASE_SECONDS": "ten"},
                                 {"JOBS_LEASE_SECONDS": "1"}, {"AUTH_MODE": "everyone"},
                                 {"AUDIO_CHUNK_MAX_CHARS": "100", "AUDIO_CHUNK_OVERLAP_CHARS": "100"}])
def test_bad_values_name_the_setting(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert next(iter(env)) in str(info.value) or "AUDIO_CHUNK" in str(info.value)


def test_every_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.rst").read_text()
    missing = [name for name, _default, _comment in setting_table() if f"``{name}``" not in readme]
    assert missing == []


def test_only_config_reads_the_environment() -> None:
    package = Path(__file__).resolve().parents[2] / "audiojobs"
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name != "config.py" and ("os.environ" in p.read_text() or "os.getenv" in p.read_text())]
    assert offenders == []


@pytest.mark.parametrize(("env", "named"), [
    ({"AUDIO_TIER_LIMITS_JSON": "{not json"}, "AUDIO_TIER_LIMITS_JSON"),
    ({"AUDIOJOBS_DEFAULT_TIER": "gold"}, "AUDIOJOBS_DEFAULT_TIER"),
    ({"AUDIOJOBS_SINGLE_USER_TIER": "gold"}, "AUDIOJOBS_SINGLE_USER_TIER"),
    ({"AUDIO_WORKER_STAGES": "audio_download,audio_dance"}, "AUDIO_WORKER_STAGES"),
    ({"AUDIO_URL_DENY_HOSTS": "bad host"}, "AUDIO_URL_DENY_HOSTS"),
    ({"AUDIO_ANALYSIS_DEFAULT_API": "oracle"}, "AUDIO_ANALYSIS_DEFAULT_API"),
])
def test_cross_package_rules_are_checked_by_check_settings(env: dict[str, str], named: str) -> None:
    settings = Settings.from_env(env)  # each value's own format is fine; what it names is not
    with pytest.raises(ConfigError, match=named):
        check_settings(settings)
    assert check_settings(Settings.from_env({})) is not None


def test_entry_points_refuse_bad_settings_at_start(tmp_path: Path) -> None:
    """The worker module and the CLI stop at once, naming the setting (before any job runs)."""
    env = {**environ_with({}), "AUDIO_WORKER_STAGES": "audio_dance", "REDIS_URL": "redis://127.0.0.1:1/0",
           "AUDIOJOBS_VAR_DIR": str(tmp_path / "var")}
    worker = subprocess.run([sys.executable, "-c", "import audiojobs.worker"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert worker.returncode != 0 and "AUDIO_WORKER_STAGES" in worker.stderr
    cli = subprocess.run([sys.executable, "-m", "audiojobs.cli", "users", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode != 0 and "AUDIO_WORKER_STAGES" in cli.stderr
    assert not (tmp_path / "var").exists()  # nothing was started or written


def test_the_worker_module_starts_nothing_without_redis_url(tmp_path: Path) -> None:
    env = {k: v for k, v in environ_with({"AUDIOJOBS_VAR_DIR": str(tmp_path / "var")}).items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "-c", "import audiojobs.worker"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "REDIS_URL is unset" in result.stderr
    assert not (tmp_path / "var").exists()  # no embedded Redis, no files
