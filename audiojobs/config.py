"""Every setting of audiojobs, read from the environment in one place.

This module is the only reader of ``os.environ``. Each setting is one field of ``Settings``,
declared once with its type, environment name, parser, default and meaning; ``from_env``, the
README's table and ``audiojobs config`` are all made from those fields.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from audiojobs.errors import ConfigError

DEFAULT_MODEL_NAMES = (
    "tiny.en,tiny,base.en,base,small.en,small,medium.en,medium,"
    "large-v1,large-v2,large-v3,large-v3-turbo,turbo"
)


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _parse_int(minimum: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        return value

    return parse


def _parse_str(name: str, raw: str) -> str:
    return raw.strip()


def _parse_optional_str(name: str, raw: str) -> str | None:
    return raw.strip() or None


def _parse_paths(name: str, raw: str) -> tuple[str, ...]:
    """A PATH-like list: directories separated by ':'; empty entries are dropped."""
    return tuple(part for part in (p.strip() for p in raw.split(":")) if part)


def _parse_csv(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in raw.split(",")) if part)


def _parse_ports(name: str, raw: str) -> tuple[int, ...]:
    ports = []
    for part in _parse_csv(name, raw):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ConfigError(f"{name} must be comma-separated port numbers, not {raw!r}")
        ports.append(int(part))
    return tuple(ports)


def _parse_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
        return value

    return parse


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one setting is read: the field it fills, its environment name, parser, default, meaning."""

    attr: str
    env: str
    parse: Callable[[str, str], Any]
    default: str
    comment: str


def setting(env: str, parse: Callable[[str, str], Any], default: str, comment: str) -> Any:
    """Declare a Settings field read from ``env`` (the field stays required: ``from_env`` fills it)."""
    return dataclasses.field(metadata={"env": env, "parse": parse, "default": default, "comment": comment})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of audiojobs, one field each: its type, environment name, parser, default (as
    the environment would spell it) and meaning. README.rst's table is made from these."""

    var_dir: str = setting("AUDIOJOBS_VAR_DIR", _parse_str, "var", "state directory: SQLite file, keys, Redis data")
    database_url: str | None = setting("DATABASE_URL", _parse_optional_str, "",
                                       "SQLAlchemy URL; empty = SQLite file in var/")
    redis_url: str | None = setting(
        "REDIS_URL", _parse_optional_str, "",
        "broker and counters; empty = the Redis `audiojobs up` starts (its URL kept in var/redis)")
    embedded_redis_port: int = setting("AUDIOJOBS_EMBEDDED_REDIS_PORT", _parse_int(0), "0",
                                       "port of the embedded Redis; 0 = pick a free one")
    api_key: str | None = setting("AUDIOJOBS_API_KEY", _parse_optional_str, "",
                                  "single-user key; empty = the one in var/api_key")
    auth_mode: str = setting("AUTH_MODE", _parse_choice("single_user", "multi_user"), "single_user",
                             "who may call the API")
    single_user_id: str = setting("AUDIOJOBS_SINGLE_USER_ID", _parse_str, "1", "owner_user_id of the single user")
    single_user_tier: str = setting("AUDIOJOBS_SINGLE_USER_TIER", _parse_str, "premium", "tier of the single user")
    jwt_secret: str | None = setting("AUDIOJOBS_JWT_SECRET", _parse_optional_str, "",
                                     "signs JWTs in multi_user mode; empty = the one in var/jwt_secret")
    jwt_access_minutes: int = setting("AUDIOJOBS_JWT_ACCESS_MINUTES", _parse_int(1), "15", "access token lifetime")
    jwt_refresh_days: int = setting("AUDIOJOBS_JWT_REFRESH_DAYS", _parse_int(1), "30", "refresh token lifetime")
    rate_limit: str = setting("AUDIO_RATE_LIMIT", _parse_str, "600/minute",
                              "requests per API key or user (per client address without one) across all API "
                              "processes, e.g. 600/minute or 10/second;1000/hour; empty: no limit")
    login_rate_limit: str = setting("AUDIO_LOGIN_RATE_LIMIT", _parse_str, "5/minute;30/hour",
                                    "failed logins per username; past it the username is locked out for the "
                                    "rest of the window; empty: no limit")
    login_address_rate_limit: str = setting("AUDIO_LOGIN_ADDRESS_RATE_LIMIT", _parse_str, "20/minute;200/hour",
                                            "failed logins and rejected keys or tokens (401) per client "
                                            "address, all endpoints together; empty: no limit")
    default_tier: str = setting("AUDIOJOBS_DEFAULT_TIER", _parse_str, "free", "tier of a new user")
    tier_limits_json: str | None = setting(
        "AUDIO_TIER_LIMITS_JSON", _parse_optional_str, "",
        "JSON overriding or adding tiers: {name: {daily_minutes, concurrent_jobs, max_file_mb, priority}}")
    batch_max_items: int = setting("AUDIO_BATCH_MAX_ITEMS", _parse_int(1), "100",
                                   "jobs one POST /jobs/batch may submit")
    max_queued_per_user: int = setting("AUDIO_MAX_QUEUED_PER_USER", _parse_int(1), "100",
                                       "queued jobs a user may have before submit answers 429")
    quota_reset_cron: str = setting("AUDIO_QUOTA_RESET_CRON", _parse_str, "0 0 * * *",
                                    "when beat resets and reconciles quotas (cron, UTC)")
    strict_queue_depth: int = setting("AUDIO_STRICT_QUEUE_DEPTH", _parse_int(1), "2",
                                      "with AUDIO_JOBS_OWNER_STRICT: admitted jobs that may wait unstarted")
    local_roots: tuple[str, ...] = setting("AUDIO_LOCAL_ROOTS", _parse_paths, "",
                                           "dirs local_path may point into (':'-separated)")
    url_allow_hosts: tuple[str, ...] = setting(
        "AUDIO_URL_ALLOW_HOSTS", _parse_csv, "",
        "host or host:port entries exempt from the address rule of the URL guard (see Security)")
    url_deny_hosts: tuple[str, ...] = setting("AUDIO_URL_DENY_HOSTS", _parse_csv, "",
                                              "host or host:port entries the URL guard refuses")
    url_allow_ports: tuple[int, ...] = setting("AUDIO_URL_ALLOW_PORTS", _parse_ports, "80,443", "ports a URL may use")
    max_duration: int = setting("AUDIO_MAX_DURATION_SECONDS", _parse_int(1), "14400", "longest media a job may have")
    download_max_seconds: int = setting("AUDIO_DOWNLOAD_MAX_SECONDS", _parse_int(1), "900",
                                        "longest a URL download may take in all")
    sync_timeout: int = setting(
        "AUDIO_SYNC_TIMEOUT_SECONDS", _parse_int(0), "120",
        "POST /audio/transcriptions waits this long, then answers 202 with the job (0: at once)")
    events_max_seconds: int = setting("AUDIO_EVENTS_MAX_SECONDS", _parse_int(1), "600",
                                      "longest a GET /jobs/{id}/events stream stays open (it holds an API worker)")
    max_request_bytes: int = setting("AUDIO_MAX_REQUEST_BYTES", _parse_int(1024), "1048576",
                                     "largest request body the API reads (413 above)")
    work_dir: str | None = setting("AUDIO_WORK_DIR", _parse_optional_str, "",
                                   "the file store's objects and the default scratch directory; empty = var/work")
    default_model: str = setting("AUDIO_DEFAULT_MODEL", _parse_str, "tiny.en", "what model 'whisper-1' means")
    allowed_models: tuple[str, ...] = setting("AUDIO_ALLOWED_MODELS", _parse_csv, DEFAULT_MODEL_NAMES,
                                              "model names a submit may ask for")
    whisper_backend: str = setting("AUDIO_WHISPER_BACKEND", _parse_choice("faster-whisper", "openai-whisper"),
                                   "faster-whisper",
                                   "backend of a model name without a 'backend:' prefix")
    model_dir: str | None = setting("AUDIO_MODEL_DIR", _parse_optional_str, "",
                                    "downloaded and converted weights (openai-whisper NAME.pt); empty = var/models")
    whisper_device: str = setting("AUDIO_WHISPER_DEVICE", _parse_choice("auto", "cpu", "cuda"), "auto",
                                  "where models run")
    whisper_compute_type: str = setting("AUDIO_WHISPER_COMPUTE_TYPE", _parse_str, "default",
                                        "CTranslate2 compute type; default = int8 on CPU, float16 on CUDA")
    whisper_cpu_threads: int = setting(
        "AUDIO_WHISPER_CPU_THREADS", _parse_int(0), "0",
        "threads per model on CPU; 0 = sized from the cores (cores / the worker's processes)")
    transcribe_batch_max: int = setting(
        "AUDIO_TRANSCRIBE_BATCH_MAX", _parse_int(0), "0",
        "windows of several jobs a transcription worker decodes in one pass (threads pool); "
        "0 = 8 on CUDA, off on the CPU (measured slower there: scripts/bench part c); "
        "1 = off (a prefork worker, one job per process)")
    transcribe_batch_wait_ms: int = setting(
        "AUDIO_TRANSCRIBE_BATCH_WAIT_MS", _parse_int(0), "50",
        "once a job waits, how long the batcher waits for more jobs that are on their way")
    whisper_batch_size: int = setting(
        "AUDIO_WHISPER_BATCH_SIZE", _parse_int(0), "3",
        "faster-whisper: windows of speech decoded together for long audio (~60 MB each on CPU; GPUs: 16); 0 = off")
    whisper_batch_min_seconds: int = setting(
        "AUDIO_WHISPER_BATCH_MIN_SECONDS", _parse_int(0), "60",
        "audio at least this long is decoded in batches; shorter audio window by window")
    storage_url: str | None = setting(
        "AUDIO_STORAGE_URL", _parse_optional_str, "",
        "object store for artifacts between stages: file:///DIR or s3://BUCKET/PREFIX; empty = AUDIO_WORK_DIR")
    s3_endpoint_url: str | None = setting("AUDIO_S3_ENDPOINT_URL", _parse_optional_str, "",
                                          "S3 API endpoint of an s3:// store (MinIO, rclone, Ceph …); empty = AWS")
    scratch_dir: str = setting(
        "AUDIO_SCRATCH_DIR", _parse_str, "",
        "this host's private copies of artifacts a stage reads or writes; empty = AUDIO_WORK_DIR/scratch")
    storage_orphan_hours: int = setting("AUDIO_STORAGE_ORPHAN_HOURS", _parse_int(1), "24",
                                        "the beat sweep deletes objects of final or unknown jobs older than this")
    cpu_queue: str = setting("AUDIO_CPU_QUEUE", _parse_str, "audio_cpu", "queue of every stage but transcription")
    transcribe_queue: str = setting("AUDIO_TRANSCRIBE_QUEUE", _parse_str, "audio_gpu", "queue of audio_transcribe")
    control_queue: str = setting("AUDIO_CONTROL_QUEUE", _parse_str, "audio_control", "queue of the reaper and sweeper")
    worker_stages: tuple[str, ...] = setting(
        "AUDIO_WORKER_STAGES", _parse_csv, "",
        "stages this worker runs; others go back to AUDIO_CPU_QUEUE (gpu-worker: audio_transcribe)")
    handback_seconds: int = setting("AUDIO_HANDBACK_SECONDS", _parse_int(0), "2",
                                    "delay before a handed-back stage runs")
    gpu_devices: tuple[str, ...] = setting(
        "AUDIO_GPU_DEVICES", _parse_csv, "",
        "GPU ids of gpu-worker, one process each; empty = CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists")
    max_tasks_per_child: int = setting("AUDIO_WORKER_MAX_TASKS_PER_CHILD", _parse_int(0), "0",
                                       "recycle a worker process after this many tasks; 0 = never")
    worker_enabled: bool = setting("AUDIO_JOBS_WORKER_ENABLED", _parse_bool, "false",
                                   "the API service also runs a worker for both queues (all-in-one)")
    owner_strict: bool = setting("AUDIO_JOBS_OWNER_STRICT", _parse_bool, "false",
                                 "owner-aware acquisition (see README)")
    lease_seconds: int = setting("JOBS_LEASE_SECONDS", _parse_int(5), "120", "how long a running stage holds its job")
    max_retries: int = setting("AUDIO_JOBS_MAX_RETRIES", _parse_int(0), "3",
                               "retries per job (transient errors, lost workers) before it fails")
    reaper_interval: int = setting("AUDIO_REAPER_INTERVAL_SECONDS", _parse_int(1), "10",
                                   "how often beat runs the reaper (expired leases, broker loss, due retries)")
    priority_aging_seconds: int = setting(
        "AUDIO_PRIORITY_AGING_SECONDS", _parse_int(0), "60",
        "an admitted job rises one priority level per this many seconds (up to 9; see Priorities); 0 = no aging")
    stall_seconds: int = setting(
        "AUDIO_STALL_SECONDS", _parse_int(0), "0",
        "a job with no lease, message or change this long gets a new dispatch (stall watchdog); 0 = JOBS_LEASE_SECONDS")
    soft_shutdown_seconds: int = setting(
        "AUDIO_WORKER_SOFT_SHUTDOWN_SECONDS", _parse_int(0), "30",
        "on SIGTERM a worker lets running stages finish this long, then hands them back")
    idempotency_ttl: int = setting("AUDIO_IDEMPOTENCY_TTL_SECONDS", _parse_int(1), "86400",
                                   "how long an Idempotency-Key returns the same job")
    stage_time_limit: int = setting("AUDIO_STAGE_TIME_LIMIT", _parse_int(10), "900", "hard limit (s) of a CPU stage")
    transcribe_time_limit: int = setting("AUDIO_TRANSCRIBE_TIME_LIMIT", _parse_int(10), "3600",
                                         "hard limit (s) of audio_transcribe")
    chunk_max_chars: int = setting("AUDIO_CHUNK_MAX_CHARS", _parse_int(50), "1000", "largest chunk, in characters")
    chunk_overlap_chars: int = setting(
        "AUDIO_CHUNK_OVERLAP_CHARS", _parse_int(0), "200",
        "text repeated from the previous chunk, in whole sentences up to this many characters")
    subtitle_line_chars: int = setting("AUDIO_SUBTITLE_MAX_LINE_CHARS", _parse_int(10), "42",
                                       "srt/vtt: characters per line")
    subtitle_lines: int = setting("AUDIO_SUBTITLE_MAX_LINES", _parse_int(1), "2", "srt/vtt: lines per cue")
    subtitle_seconds: int = setting("AUDIO_SUBTITLE_MAX_SECONDS", _parse_int(1), "7",
                                    "srt/vtt: longest a cue stays on screen")
    analysis_default_api: str = setting("AUDIO_ANALYSIS_DEFAULT_API", _parse_str, "local",
                                        "provider when api_name is absent: local, openai, anthropic or ollama")
    openai_api_key: str | None = setting("OPENAI_API_KEY", _parse_optional_str, "", "key of api_name openai")
    openai_base_url: str = setting(
        "OPENAI_BASE_URL", _parse_str, "https://api.openai.com/v1",
        "api_name openai: OpenAI or any OpenAI-compatible server (vLLM, llama.cpp, Ollama's /v1)")
    openai_model: str = setting("AUDIO_OPENAI_MODEL", _parse_str, "gpt-4o-mini", "model of api_name openai")
    anthropic_api_key: str | None = setting("ANTHROPIC_API_KEY", _parse_optional_str, "", "key of api_name anthropic")
    anthropic_base_url: str = setting("ANTHROPIC_BASE_URL", _parse_str, "https://api.anthropic.com",
                                      "server of api_name anthropic")
    anthropic_model: str = setting("AUDIO_ANTHROPIC_MODEL", _parse_str, "claude-haiku-4-5",
                                   "model of api_name anthropic")
    ollama_base_url: str = setting("OLLAMA_BASE_URL", _parse_str, "http://127.0.0.1:11434", "server of api_name ollama")
    ollama_model: str = setting("AUDIO_OLLAMA_MODEL", _parse_str, "llama3.2", "model of api_name ollama")
    analysis_context_tokens: int = setting(
        "AUDIO_ANALYSIS_CONTEXT_TOKENS", _parse_int(512), "8192",
        "the LLM's context; a longer transcript is summarised map-reduce over chunks")
    analysis_timeout: int = setting("AUDIO_ANALYSIS_TIMEOUT_SECONDS", _parse_int(1), "120",
                                    "timeout of one LLM request")
    analysis_max_retries: int = setting(
        "AUDIO_ANALYSIS_MAX_RETRIES", _parse_int(0), "3",
        "retries of an LLM request after a rate limit, 5xx or connection error (exponential backoff)")
    analysis_cache_seconds: int = setting(
        "AUDIO_ANALYSIS_CACHE_SECONDS", _parse_int(0), "604800",
        "how long an analysis is reused for the same transcript, prompt and model; 0 = never")
    webhook_secret: str | None = setting("AUDIO_WEBHOOK_SECRET", _parse_optional_str, "",
                                         "signs callbacks of users without their own secret (see Webhooks)")
    webhook_max_attempts: int = setting("AUDIO_WEBHOOK_MAX_ATTEMPTS", _parse_int(1), "6",
                                        "tries of one webhook delivery")
    webhook_backoff_seconds: int = setting("AUDIO_WEBHOOK_BACKOFF_SECONDS", _parse_int(1), "10",
                                           "wait before a delivery's second try; doubles with each try after")
    webhook_timeout: int = setting("AUDIO_WEBHOOK_TIMEOUT_SECONDS", _parse_int(1), "10",
                                   "timeout of one webhook request")
    download_timeout: int = setting("AUDIO_DOWNLOAD_TIMEOUT", _parse_int(1), "30",
                                    "socket timeout (s) of a URL download")
    ffmpeg_binary: str | None = setting("AUDIO_FFMPEG", _parse_optional_str, "",
                                        "ffmpeg to use; empty = PATH, then imageio-ffmpeg")
    server_url: str = setting("AUDIOJOBS_SERVER", _parse_str, "",
                              "API the CLI client talks to; empty = http://AUDIOJOBS_HOST:AUDIOJOBS_PORT")
    api_host: str = setting("AUDIOJOBS_HOST", _parse_str, "127.0.0.1", "where scripts/run-local binds the API")
    api_port: int = setting("AUDIOJOBS_PORT", _parse_int(1), "8000", "API port")
    api_workers: int = setting("AUDIOJOBS_API_WORKERS", _parse_int(1), "2", "gunicorn worker processes")
    worker_concurrency: int = setting(
        "AUDIOJOBS_WORKER_CONCURRENCY", _parse_int(0), "0",
        "a worker's pool: prefork processes, or threads of a batching transcription worker; "
        "0 = sized from the cores")
    flower_address: str = setting("FLOWER_ADDRESS", _parse_str, "127.0.0.1",
                                  "where Flower listens (0.0.0.0 in containers)")
    flower_port: int = setting("FLOWER_PORT", _parse_int(1), "5555", "Flower's port")
    flower_url_prefix: str = setting("FLOWER_URL_PREFIX", _parse_str, "", "Flower behind a reverse proxy at /PREFIX")
    flower_basic_auth: str | None = setting("FLOWER_BASIC_AUTH", _parse_optional_str, "",
                                            "user:password for Flower; empty = the one in var/flower_auth")
    log_format: str = setting("AUDIOJOBS_LOG_FORMAT", _parse_choice("auto", "json", "text"), "auto",
                              "log lines as JSON objects (with job_id and request_id) or plain text; auto: "
                              "text on a terminal, JSON otherwise (services, compose, files)")
    log_level: str = setting("AUDIOJOBS_LOG_LEVEL", _parse_choice("debug", "info", "warning", "error"), "info",
                             "log level")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default: the process environment) plus overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in _specs():
            values[spec.attr] = spec.parse(spec.env, env.get(spec.env, spec.default))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """The rules this module can judge alone. Those that need another package's knowledge (tier
        names, stage names, URL guard entries, analysis providers) are
        :func:`audiojobs.checks.check_settings`, which every process's entry point runs."""
        if self.chunk_overlap_chars >= self.chunk_max_chars:
            raise ConfigError("AUDIO_CHUNK_OVERLAP_CHARS must be smaller than AUDIO_CHUNK_MAX_CHARS")
        if len(self.quota_reset_cron.split()) != 5:
            raise ConfigError(f"AUDIO_QUOTA_RESET_CRON must have 5 fields, not {self.quota_reset_cron!r}")

    # Derived values -------------------------------------------------------------------------
    @property
    def var_path(self) -> Path:
        return Path(self.var_dir).resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_path / 'audiojobs.db'}"

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir).resolve() if self.work_dir else self.var_path / "work"

    @property
    def model_path(self) -> Path:
        return Path(self.model_dir).resolve() if self.model_dir else self.var_path / "models"

    @property
    def resolved_local_roots(self) -> tuple[Path, ...]:
        return tuple(Path(root).resolve() for root in self.local_roots)

    @property
    def scratch_path(self) -> Path:
        return Path(self.scratch_dir).resolve() if self.scratch_dir else self.work_path / "scratch"

    @property
    def effective_stall_seconds(self) -> int:
        """How long the stall watchdog lets a job sit without a lease, a message or a change."""
        return self.stall_seconds or self.lease_seconds

    @property
    def broker_visibility_timeout(self) -> int:
        """Longer than the longest task may run, so Redis never re-delivers a task still running."""
        return max(self.stage_time_limit, self.transcribe_time_limit) + 600

    @property
    def model_names(self) -> frozenset[str]:
        """Every value the submit field ``model`` accepts."""
        return frozenset({"whisper-1", *self.allowed_models})


@lru_cache(maxsize=1)
def _specs() -> tuple[Spec, ...]:
    return tuple(Spec(f.name, f.metadata["env"], f.metadata["parse"], f.metadata["default"], f.metadata["comment"])
                 for f in dataclasses.fields(Settings))


def setting_table() -> list[tuple[str, str, str]]:
    """(environment name, default, comment) of every setting, for README and ``audiojobs config``."""
    return [(spec.env, spec.default, spec.comment) for spec in _specs()]


def environ_with(overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment plus ``overrides``: what a child process of ours should see."""
    env = dict(os.environ)
    env.update(overrides)
    return env


def visible_cuda_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES as the CUDA runtime will read it; None when unset. Not a setting of ours:
    CUDA's own, read by gpu-worker to find its GPUs and written per pool process to pin one."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def set_visible_cuda_devices(devices: str) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = devices


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings.from_env()
