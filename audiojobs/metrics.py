"""Prometheus metrics shared by every process through Redis.

Workers and API processes record into small Redis hashes (a histogram is bucket counts, a sum and a
count); ``GET /metrics`` reads them, the jobs table and the queue lengths at scrape time and renders
the Prometheus text format with ``prometheus_client``. Nothing is kept per process, so any number of
gunicorn and Celery processes add up without a multiprocess directory. Recording never raises: a
metric lost to a Redis blip must not fail a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis

log = logging.getLogger(__name__)

PREFIX = "audiojobs:metrics"
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


def _observe(client: redis.Redis, key: str, value: float, buckets: tuple[float, ...]) -> None:
    bucket = next((b for b in buckets if value <= b), "+Inf")
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, f"le:{bucket}", 1)
    pipe.hincrbyfloat(key, "sum", value)
    pipe.hincrby(key, "count", 1)
    pipe.execute()


def _safely(action: str, fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except redis.RedisError as exc:
        log.warning("metric %s not recorded: %r", action, exc)


def observe_stage(client: redis.Redis, stage: str, seconds: float) -> None:
    _safely("stage duration", _observe, client, f"{PREFIX}:stage_seconds:{stage}", seconds, STAGE_BUCKETS)


def observe_rtf(client: redis.Redis, backend: str, rtf: float) -> None:
    _safely("real-time factor", _observe, client, f"{PREFIX}:rtf:{backend}", rtf, RTF_BUCKETS)


def count_refusal(client: redis.Redis, reason: str) -> None:
    _safely("quota refusal", client.hincrby, f"{PREFIX}:quota_refusals", reason, 1)


def count_stall(client: redis.Redis, stage: str) -> None:
    _safely("stall", client.hincrby, f"{PREFIX}:stalls", stage, 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _histogram(client: redis.Redis, key: str, buckets: tuple[float, ...]) -> tuple[list[tuple[str, float]], float]:
    raw = {_text(k): float(v) for k, v in client.hgetall(key).items()}
    cumulative, total = [], 0.0
    for bound in [*buckets, "+Inf"]:
        total += raw.get(f"le:{bound}", 0.0)
        cumulative.append((str(bound), total))
    return cumulative, raw.get("sum", 0.0)


class AudioJobsCollector:
    """Collects at scrape time; the caller reads ``job_counts`` and ``queue_depths``."""

    def __init__(self, client: redis.Redis, job_counts: dict[str, int], queue_depths: dict[str, int]) -> None:
        self.client = client
        self.job_counts = job_counts
        self.queue_depths = queue_depths

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        jobs = GaugeMetricFamily("audiojobs_jobs", "Jobs by status (the jobs table).", labels=["status"])
        for status, count in sorted(self.job_counts.items()):
            jobs.add_metric([status], count)
        yield jobs
        depth = GaugeMetricFamily("audiojobs_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        for queue, waiting in self.queue_depths.items():
            depth.add_metric([queue], waiting)
        yield depth
        stages = HistogramMetricFamily("audiojobs_stage_duration_seconds", "Time a stage took to run.",
                                       labels=["stage"])
        for key in sorted(self.client.scan_iter(f"{PREFIX}:stage_seconds:*")):
            stage = _text(key).rsplit(":", 1)[1]
            buckets, total = _histogram(self.client, _text(key), STAGE_BUCKETS)
            stages.add_metric([stage], buckets, total)
        yield stages
        rtf = HistogramMetricFamily("audiojobs_transcription_real_time_factor",
                                    "Transcription seconds per second of audio.", labels=["backend"])
        for key in sorted(self.client.scan_iter(f"{PREFIX}:rtf:*")):
            buckets, total = _histogram(self.client, _text(key), RTF_BUCKETS)
            rtf.add_metric([_text(key).rsplit(":", 1)[1]], buckets, total)
        yield rtf
        refusals = CounterMetricFamily("audiojobs_quota_refusals", "Requests and jobs refused by a quota.",
                                       labels=["reason"])
        for reason, refused in sorted(self.client.hgetall(f"{PREFIX}:quota_refusals").items()):
            refusals.add_metric([_text(reason)], float(refused))
        yield refusals
        stalls = CounterMetricFamily("audiojobs_stalls", "Jobs the reaper's stall watchdog found stranded "
                                     "(no lease, message or change) and dispatched again, by stage.", labels=["stage"])
        for stalled_stage, stall_count in sorted(self.client.hgetall(f"{PREFIX}:stalls").items()):
            stalls.add_metric([_text(stalled_stage)], float(stall_count))
        yield stalls


def render(client: redis.Redis, job_counts: dict[str, int], queue_depths: dict[str, int]) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AudioJobsCollector(client, job_counts, queue_depths))
    return generate_latest(registry)
