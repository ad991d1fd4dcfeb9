"""The Celery app and the Task base class every pipeline stage runs under."""

from __future__ import annotations

import gc
import logging
from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging, worker_init, worker_process_init, worker_ready

import celeryconfig
from audiojobs.config import Settings, get_settings, set_visible_cuda_devices
from audiojobs.db import dispose_engines
from audiojobs.errors import ConfigError, ModelUnavailable
from audiojobs.logs import configure as configure_logging
from audiojobs.transcription.registry import get_backend

log = logging.getLogger(__name__)

# The workers' app: the stage tasks register on it.
celery = Celery("audiojobs", include=["audiojobs.pipeline.tasks", "audiojobs.webhooks.tasks"])


def _configure(app: Celery, settings: Settings) -> Celery:
    """No I/O: the broker is connected to when a task is first sent or received."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is unset: Celery needs the broker (`audiojobs up` and the `audiojobs` "
                          "commands start or find one and pass it on)")
    app.conf.update(celeryconfig.build(settings))
    app.conf.audiojobs_settings = settings
    return app


def celery_init_app(settings: Settings | None = None) -> Celery:
    """Configure the workers' Celery app from ``settings`` (default: this process's environment)."""
    return _configure(celery, settings or get_settings())


def producer_app(settings: Settings) -> Celery:
    """A Celery app of one Flask app's own, that only sends tasks (by name) to its broker.

    Each ``create_app(settings)`` gets its own, so two Flask apps in one process never share a
    broker connection pool configured for the other.
    """
    return _configure(Celery("audiojobs", set_as_current=False), settings)


def app_settings() -> Settings:
    """The settings the Celery app was initialised with (a worker: its environment)."""
    settings = celery.conf.get("audiojobs_settings")
    return settings if isinstance(settings, Settings) else get_settings()


@setup_logging.connect
def _setup_logging(**_kwargs: Any) -> None:
    """Workers and beat log like the API: audiojobs.logs, not Celery's own format."""
    configure_logging(app_settings())


@worker_init.connect
def _size_worker(sender: Any = None, **_kwargs: Any) -> None:
    """Before the pool starts: the model's CPU threads and the batch size for this pool (sizing.py)."""
    from audiojobs.sizing import sized

    pool = str(getattr(sender, "pool_cls", "prefork"))
    pool = "threads" if "thread" in pool.lower() or pool == "custom" else "prefork"
    concurrency = int(getattr(sender, "concurrency", 1) or 1)
    celery.conf.audiojobs_settings = sized(app_settings(), pool, concurrency)
    celery.conf.audiojobs_pool = f"{pool} x {concurrency}"


@worker_ready.connect
def _ready(**_kwargs: Any) -> None:
    """Say how the worker is sized. A batching worker has no pool processes to load the model in:
    it loads it now, in the background, so the first job does not wait for it."""
    import threading

    settings = app_settings()
    log.info("worker pool %s: model threads %d, batch %d", celery.conf.get("audiojobs_pool", "?"),
             settings.whisper_cpu_threads, settings.transcribe_batch_max)
    if settings.transcribe_batch_max > 1:
        threading.Thread(target=preload_model, args=(settings,), name="preload-model", daemon=True).start()


@worker_process_init.connect
def _after_fork(**_kwargs: Any) -> None:
    # A forked pool process must not reuse its parent's database sockets.
    dispose_engines()
    # Everything inherited from the parent lives as long as this process: later garbage collections
    # skip it (a full one otherwise walks every imported module's objects; it also keeps the pages
    # shared with the parent instead of copying them when the collector touches them).
    gc.freeze()
    settings = app_settings()
    if settings.gpu_devices:
        pin_gpu(settings.gpu_devices)
    if settings.worker_stages and set(settings.worker_stages) == {"audio_transcribe"}:
        preload_model(settings)


def pin_gpu(devices: tuple[str, ...]) -> str:
    """Give this pool process one GPU of its own (process index i -> the i-th device), before anything
    touches CUDA: the parent never does, so each child initialises CUDA on its own device only."""
    from billiard.process import current_process

    index = getattr(current_process(), "index", 0) or 0
    device = devices[index % len(devices)]
    set_visible_cuda_devices(device)
    log.info("pool process %s pinned to GPU %s", index, device)
    return device


def preload_model(settings: Settings) -> None:
    """Load the default model in this pool process now, so the first job does not wait for it."""
    try:
        backend = get_backend("whisper-1", settings)
        log.info("model %s loaded (%s on %s)", backend.model_label, backend.name, getattr(backend, "device", "?"))
    except ModelUnavailable as exc:
        log.error("default model not loaded: %s", exc.message)


class AudioJobsTask(Task):
    """Base of every audiojobs task: no result is kept; job state lives in the jobs table."""

    abstract = True
    ignore_result = True
    typing = True
