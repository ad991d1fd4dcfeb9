"""Celery settings for audiojobs: queues, routes and reliability, built from audiojobs settings.

``build(settings)`` is what the app loads; ``celery_init_app`` calls it so the API and every
worker share one definition. The jobs table, not a result backend, holds job state: results are
ignored and no backend is configured.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

from audiojobs.config import Settings

# kombu's Redis transport keeps one list per priority step and serves step 0 first; one step per
# level (audiojobs/jobs/priority.py maps level 9 to message priority 0). The default, four steps,
# would merge levels (0-2, 3-5, 6-8).
PRIORITY_STEPS = list(range(10))
CONTROL_TASKS = ("audiojobs.reap", "audiojobs.sweep_work_dirs", "audiojobs.reset_quotas")


def _cron(spec: str) -> crontab:
    minute, hour, day_of_month, month_of_year, day_of_week = spec.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)
STAGE_TASKS = (
    "audiojobs.audio_download",
    "audiojobs.audio_convert",
    "audiojobs.audio_transcribe",
    "audiojobs.audio_chunk",
    "audiojobs.audio_analyze",
    "audiojobs.audio_store",
)


def build(settings: Settings) -> dict[str, Any]:
    cpu, gpu, control = settings.cpu_queue, settings.transcribe_queue, settings.control_queue
    redis_url = settings.redis_url
    # The anonymous exchange: Redis puts a message straight on the list named by its routing key.
    # A named exchange would route through binding keys kept in Redis, which a Redis restart
    # without persistence loses while producers still believe them declared (messages dropped).
    direct = Exchange("", type="direct")
    queues = [Queue(name, direct, routing_key=name) for name in dict.fromkeys([control, cpu, gpu])]
    return {
        "broker_url": redis_url,
        # kombu's Redis transport, fixed so that a worker survives losing Redis (redis_transport.py).
        "broker_transport": "audiojobs.redis_transport:Transport" if (redis_url or "").startswith("redis://") else None,
        "result_backend": None,
        "task_ignore_result": True,
        # Routes: transcription to its own (GPU) queue, everything else to the CPU queue.
        "task_queues": queues,
        "task_default_queue": cpu,
        "task_default_exchange": "",
        "task_default_routing_key": cpu,
        "task_routes": {
            "audiojobs.audio_transcribe": {"queue": gpu, "exchange": "", "routing_key": gpu},
            "audiojobs.reap": {"queue": control, "exchange": "", "routing_key": control},
            "audiojobs.sweep_work_dirs": {"queue": control, "exchange": "", "routing_key": control},
            "audiojobs.reset_quotas": {"queue": control, "exchange": "", "routing_key": control},
            "audiojobs.*": {"queue": cpu, "exchange": "", "routing_key": cpu},
        },
        # Reliability: a task is acknowledged only after it ran, and re-delivered if its worker
        # dies; a worker takes one task at a time so no task waits behind a long transcription.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task that fails outside its stage (say, the next message could not be published) stays
        # unacknowledged: the broker re-delivers it after the visibility timeout, as a last resort.
        "task_acks_on_failure_or_timeout": False,
        "worker_prefetch_multiplier": 1,
        # A Redis blip must not kill a 20-minute transcription; fencing makes a re-delivery harmless.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # SIGTERM (see local_stack.worker_env: REMAP_SIGTERM=SIGQUIT) gives running stages this long
        # to finish before the worker hands them back to the broker.
        "worker_soft_shutdown_timeout": float(settings.soft_shutdown_seconds),
        "worker_enable_soft_shutdown_on_idle": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Must exceed the longest task time limit, or Redis re-delivers a task still running.
            "visibility_timeout": settings.broker_visibility_timeout,
            # Message priorities: a worker takes the highest level waiting in any of its queues.
            "priority_steps": PRIORITY_STEPS,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 2.0},
        "task_annotations": {
            "audiojobs.audio_transcribe": {"time_limit": settings.transcribe_time_limit,
                                           "soft_time_limit": max(5, settings.transcribe_time_limit - 30)},
            "*": {"time_limit": settings.stage_time_limit,
                  "soft_time_limit": max(5, settings.stage_time_limit - 30)},
        },
        # Events let Flower show every stage task.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "reap": {"task": "audiojobs.reap", "schedule": float(settings.reaper_interval),
                     "options": {"expires": float(settings.reaper_interval)}},
            "sweep-work-dirs": {"task": "audiojobs.sweep_work_dirs", "schedule": 900.0,
                                "options": {"expires": 900.0}},
            "reset-quotas": {"task": "audiojobs.reset_quotas", "schedule": _cron(settings.quota_reset_cron),
                             "options": {"expires": 3600.0}},
        },
        "worker_hijack_root_logger": False,
        # Recycles pool processes (and the models they hold) after this many tasks; None = never.
        "worker_max_tasks_per_child": settings.max_tasks_per_child or None,
    }
