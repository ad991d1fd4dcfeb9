"""How big a worker is by default: its pool, its size and the model's CPU threads, from the cores.

Two shapes of worker:

* **A batching transcription worker** (its queues include the transcription queue and the batch
  is above 1: by default on CUDA, on the CPU when ``AUDIO_TRANSCRIBE_BATCH_MAX`` asks for it;
  faster-whisper): one process, Celery's threads pool.
  Its threads run each job's stages as their own tasks, and one model decodes the windows of
  all of them together (``transcription/batching.py``). Threads: the batch size, plus one per core
  for the CPU stages when it takes the CPU queue too. The model gets every core.
* **Any other worker**: prefork, one process per core (per GPU for a GPU worker), the model's
  threads the cores shared between the processes: processes x threads <= cores.

An explicit ``-c`` or ``AUDIOJOBS_WORKER_CONCURRENCY``, ``AUDIO_WHISPER_CPU_THREADS`` or
``AUDIO_TRANSCRIBE_BATCH_MAX`` wins. A batch is never larger than the worker's threads; a worker
of one thread does not batch (it runs prefork, as before batching existed).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

from audiojobs.config import Settings

CUDA_BATCH = 8


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def batch_size(settings: Settings, on_gpu: bool) -> int:
    """Windows decoded together: ``AUDIO_TRANSCRIBE_BATCH_MAX``; else 8 on CUDA, and 1 (off) on
    the CPU, where ``scripts/bench`` part c measured a batch of 4 slower than one single-threaded
    process per core (on the CPU the encoder's work per window does not shrink with the batch).
    openai-whisper: 1 (it decodes one job at a time)."""
    if settings.whisper_backend == "openai-whisper":
        return 1
    if settings.transcribe_batch_max:
        return settings.transcribe_batch_max
    return CUDA_BATCH if on_gpu else 1


@dataclass(frozen=True)
class Plan:
    pool: str  # "prefork" or "threads"
    concurrency: int  # processes (prefork) or threads
    batch: int  # windows per pass; 1 = no batching
    cpu_threads: int  # the model's threads on CPU


def plan(settings: Settings, queues: Sequence[str], concurrency: int | None = None, gpus: int = 0,
         cpu_count: int | None = None) -> Plan:
    n = cpu_count or cores()
    explicit = concurrency or settings.worker_concurrency or None
    batch = batch_size(settings, on_gpu=gpus > 0 or settings.whisper_device == "cuda") \
        if settings.transcribe_queue in queues else 1
    if batch > 1:
        threads = explicit or batch + (n if settings.cpu_queue in queues else 0)
        if min(batch, threads) > 1:
            return Plan("threads", threads, min(batch, threads), settings.whisper_cpu_threads or n)
    only_transcribe = set(queues) == {settings.transcribe_queue}
    processes = explicit or (max(1, gpus) if only_transcribe and gpus else n)
    return Plan("prefork", processes, 1, settings.whisper_cpu_threads or max(1, n // processes))


def sized(settings: Settings, pool: str, concurrency: int, cpu_count: int | None = None) -> Settings:
    """The settings a worker process runs with, once its pool is known: the model's CPU threads and
    the batch size filled in where the environment left them to the machine."""
    n = cpu_count or cores()
    if pool == "threads":
        on_gpu = settings.whisper_device == "cuda" or bool(settings.gpu_devices)
        batch = max(1, min(batch_size(settings, on_gpu), concurrency))
        threads = settings.whisper_cpu_threads or n
    else:
        batch = 1  # one job at a time per process: nothing to batch with
        threads = settings.whisper_cpu_threads or max(1, n // max(1, concurrency))
    return dataclasses.replace(settings, transcribe_batch_max=batch, whisper_cpu_threads=threads)
