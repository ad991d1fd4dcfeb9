"""Part h of scripts/bench: two ways to give Celery priorities on the Redis transport, measured
side by side on a private Redis with one real worker process (prefork, concurrency 1, acks late,
prefetch 1: how audiojobs runs its workers).

  messages  one queue; each message carries its priority and kombu keeps one Redis list per
            priority step (``priority_steps``: ten, one per level). What audiojobs uses.
  queues    one queue per level (``bench.p9`` … ``bench.p0``); the worker consumes all of them in
            level order (``queue_order_strategy: priority``).
  queues_rr the same queues with kombu's default order (``round_robin``): what one gets by
            forgetting that setting.

The backlog: LOW tasks at level 2 are queued, then HIGH tasks at level 6, before the worker starts;
each task sleeps 5 ms and records the order it ran in. Figures: how many low tasks ran before the
last high one (0 is perfect), tasks per second through the worker, messages published per second.
Run as a script it is the worker: ``bench_priorities.py worker MODE REDIS_URL``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

REPO = Path(__file__).resolve().parent.parent
LEVELS = range(10)
SEEN = "bench:priorities:seen"


def make_app(mode: str, redis_url: str) -> Celery:
    import redis

    recorder = redis.Redis.from_url(redis_url)
    app = Celery("bench_priorities", broker=redis_url, set_as_current=False)
    direct = Exchange("", type="direct")
    names = ["bench.p"] if mode == "messages" else [f"bench.p{level}" for level in reversed(LEVELS)]
    app.conf.update(
        task_queues=[Queue(name, direct, routing_key=name) for name in names], task_default_queue=names[0],
        task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True, result_backend=None,
        broker_transport_options={"priority_steps": list(LEVELS),
                                  "queue_order_strategy": "round_robin" if mode == "queues_rr" else "priority"},
        worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.work")
    def work(level: int, seq: int) -> None:
        time.sleep(0.005)
        recorder.rpush(SEEN, f"{level}:{seq}")

    return app


def publish(app: Celery, mode: str, level: int, seq: int) -> None:
    if mode == "messages":
        app.send_task("bench.work", args=(level, seq), queue="bench.p", routing_key="bench.p", priority=9 - level)
    else:
        queue = f"bench.p{level}"
        app.send_task("bench.work", args=(level, seq), queue=queue, routing_key=queue)


def measure(mode: str, redis_url: str, low: int, high: int) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    app = make_app(mode, redis_url)
    publish(app, mode, 2, 0)  # connects and declares: not part of the publishing rate
    started = time.perf_counter()
    with app.producer_or_acquire():
        for seq in range(1, low):
            publish(app, mode, 2, seq)
        for seq in range(high):
            publish(app, mode, 6, seq)
    publish_rate = (low + high - 1) / (time.perf_counter() - started)
    worker = subprocess.Popen([sys.executable, __file__, "worker", mode, redis_url], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60 + (low + high) * 0.1
        while client.llen(SEEN) == 0:
            assert time.monotonic() < deadline, "the worker took nothing"
            time.sleep(0.05)
        first = time.perf_counter()
        while client.llen(SEEN) < low + high:
            assert time.monotonic() < deadline, f"{mode}: only {client.llen(SEEN)} of {low + high} tasks ran"
            time.sleep(0.05)
        elapsed = time.perf_counter() - first
    finally:
        worker.terminate()
        worker.wait(30)
    seen = [entry.decode().split(":") for entry in client.lrange(SEEN, 0, -1)]
    last_high = max(i for i, (level, _seq) in enumerate(seen) if level == "6")
    inversions = sum(1 for level, _seq in seen[:last_high] if level == "2")
    keys = len(client.keys("bench.p*"))
    return {"low_before_last_high": inversions, "tasks_per_s": (low + high) / elapsed,
            "published_per_s": publish_rate, "redis_lists_used": keys}


def part_h(report: Any, tmp: Path, smoke: bool) -> None:
    from audiojobs.embedded_redis import free_port, redis_command, wait_for_redis

    low, high = (40, 5) if smoke else (400, 40)
    port = free_port()
    server = subprocess.Popen(redis_command(tmp / "redis-h", port, persist=False))
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url)
        found = {mode: measure(mode, url, low, high) for mode in ("messages", "queues", "queues_rr")}
    finally:
        server.terminate()
        server.wait(10)
    for mode, figures in found.items():
        target = "" if mode == "queues_rr" else "<= 1"  # shown for what it costs, not a way to run
        report.add("h", f"{mode}: low tasks run before the last high one ({low} low, {high} high)",
                   figures["low_before_last_high"], "tasks", target,
                   None if mode == "queues_rr" else figures["low_before_last_high"] <= 1)
        report.add("h", f"{mode}: tasks through one worker", figures["tasks_per_s"], "tasks/s")
        report.add("h", f"{mode}: messages published", figures["published_per_s"], "msgs/s")
    report.details["h"] = found


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _mode, _url = sys.argv[2], sys.argv[3]
    _app = make_app(_mode, _url)
    _queues = "bench.p" if _mode == "messages" else ",".join(f"bench.p{level}" for level in reversed(LEVELS))
    _app.worker_main(["worker", "--loglevel", "warning", "--concurrency", "1", "--pool", "prefork",
                      "-Q", _queues, "--without-gossip", "--without-mingle", "--without-heartbeat"])
