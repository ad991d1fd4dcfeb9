"""Stage messages as the broker (Redis) keeps them: where a queue's messages lie, how many wait,
which job and dispatch each is for, and sending one again at another priority.

kombu's Redis transport keeps a queue as one Redis list per priority step (celeryconfig sets ten,
one per level): ``audio_cpu`` holds level 9, ``audio_cpu\\x06\\x161`` level 8 … ``audio_cpu\\x06\\x169``
level 0. Messages a worker has taken wait in the ``unacked`` hash until acknowledged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from kombu.transport.redis import Channel

import celeryconfig
from audiojobs.jobs import priority
from audiojobs.jobs.attempts import Dispatch
from audiojobs.jobs.flow import publish

log = logging.getLogger(__name__)

SCAN_PAGE = 500


@dataclass(frozen=True)
class Queued:
    """One stage message waiting in a queue list."""

    key: str
    raw: bytes | str
    job_id: int
    dispatch: int
    level: int


@dataclass
class JobMessages:
    """Stage messages found in Redis, by (job id, dispatch)."""

    queued: dict[tuple[int, int], Queued] = field(default_factory=dict)
    taken: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # -> task ids


def queue_keys(queues: Iterable[str]) -> list[str]:
    """The Redis lists of each queue, highest level first."""
    keys = []
    for queue in dict.fromkeys(queues):
        keys += [f"{queue}{Channel.sep}{step}" if step else queue for step in celeryconfig.PRIORITY_STEPS]
    return keys


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue``, every level together."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys([queue]):
        pipe.llen(key)
    return sum(int(n) for n in pipe.execute())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse(raw: bytes | str) -> tuple[int, int, str, int] | None:
    """(job id, dispatch, task id, level) of a stage task message as kombu keeps it, else None."""
    try:
        message: Any = json.loads(raw)
        if isinstance(message, list):  # unacked entries are [message, exchange, routing key]
            message = message[0]
        headers = message.get("headers") or {}
        if headers.get("task") not in celeryconfig.STAGE_TASKS:
            return None
        properties = message.get("properties") or {}
        body = message["body"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return (int(args[0]), int(args[1]), str(headers.get("id")),
                priority.level_of_message(properties.get("priority")))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error):
        return None


def scan(client: redis.Redis, queues: Iterable[str]) -> JobMessages:
    """Every stage message in ``queues`` and in workers' hands."""
    found = JobMessages()
    for key in queue_keys(queues):
        start = 0
        while True:
            page = client.lrange(key, start, start + SCAN_PAGE - 1)
            for raw in page:
                parsed = parse(raw)
                if parsed is not None:
                    job_id, dispatch, _task_id, level = parsed
                    found.queued[(job_id, dispatch)] = Queued(key, raw, job_id, dispatch, level)
            if len(page) < SCAN_PAGE:
                break
            start += SCAN_PAGE
    for _tag, raw in client.hscan_iter(Channel.unacked_key, count=SCAN_PAGE):
        parsed = parse(raw)
        if parsed is not None:
            found.taken.setdefault(parsed[:2], []).append(parsed[2])
    return found


def send_again(celery: Celery, client: redis.Redis, waiting: Queued, dispatch: Dispatch, level: int) -> bool:
    """Send a waiting message's dispatch again at ``level``, then take the old message out of its
    list. True when the old one was still there; False when a worker took it meanwhile (then two
    messages of one dispatch exist, which the stage runner makes harmless: one runs, the other
    waits for it and finds its stage done). Sending first means a failure loses nothing."""
    publish(celery, dispatch, level)
    return int(client.lrem(waiting.key, 1, waiting.raw)) == 1  # type: ignore[arg-type]  # bytes as read
