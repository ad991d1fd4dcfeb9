"""What the broker (Redis) holds, as the reaper needs to know it.

**The epoch.** A token kept in Redis and recorded in the database. Redis without the token while
the database recorded one means Redis came back empty (a restart without persistence): its queued
messages are gone and every active job that no live lease holds is dispatched again. A new system
(or one upgraded from before the token was recorded) has no token in the database: nothing was
lost, nothing is re-dispatched, however many jobs are running.

**Messages of a job.** The stall watchdog must tell a job waiting its turn in a queue from a job
that nothing will ever move. A job's way forward is a stage message of its current dispatch:
waiting in a queue (Redis lists), or taken by a worker (Redis's ``unacked`` hash) that is still
alive. A worker that was killed outright leaves its taken messages in ``unacked`` until the
broker's visibility timeout (longer than the longest stage): the workers' remote control says
which messages a live worker holds (reserved, running, or waiting for a countdown).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid

import redis
from celery import Celery

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import messages, recovery
from audiojobs.jobs.attempts import Dispatch
from audiojobs.jobs.models import SystemState

log = logging.getLogger(__name__)

EPOCH_KEY = "audiojobs:broker_epoch"
EPOCH_STATE = "broker_epoch"
# Jobs the watchdog found without a message: job id -> "dispatch:first seen (unix time)".
SUSPECTS_KEY = "audiojobs:stall_suspects"
# A job must be seen without a message twice, this far apart, before it is rescued: a message
# moving from a queue to a worker's hands is in neither place for an instant.
CONFIRM_SECONDS = 1.0


class Epoch(enum.Enum):
    SAME = "same"  # Redis holds the token the database recorded: nothing was lost
    NEW = "new"  # no token recorded anywhere: a new system; nothing to re-send
    LOST = "lost"  # the database recorded a token Redis no longer has: Redis came back empty


def renew_epoch(settings: Settings, client: redis.Redis) -> tuple[Epoch, list[int]]:
    """Check the broker epoch; after a loss, re-dispatch every active job no live lease holds (in
    the transaction that records the new token, so a crash in between repeats the re-dispatch
    rather than forgetting it). Returns the epoch found and the re-dispatched job ids."""
    token = client.get(EPOCH_KEY)
    with session_scope(settings.effective_database_url) as session:
        state = session.get(SystemState, EPOCH_STATE, with_for_update=True)
        if token is not None:
            value = _text(token)
            if state is None:  # recorded from now on (a database from before the token was kept)
                session.add(SystemState(key=EPOCH_STATE, value=value))
            elif state.value != value:
                state.value = value
            return Epoch.SAME, []
        epoch = Epoch.NEW if state is None else Epoch.LOST
        redispatched = recovery.redispatch_waiting(session) if epoch is Epoch.LOST else []
        value = uuid.uuid4().hex
        if state is None:
            session.add(SystemState(key=EPOCH_STATE, value=value))
        else:
            state.value = value
    client.set(EPOCH_KEY, value)
    if epoch is Epoch.LOST:
        log.warning("reaper: Redis came back empty (broker epoch gone); %d jobs dispatched again", len(redispatched))
    else:
        log.info("reaper: new broker, epoch recorded")
    return epoch, redispatched


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def held_by_live_workers(celery: Celery, task_ids: list[str], timeout: float = 1.0) -> set[str] | None:
    """Which of ``task_ids`` a live worker holds (reserved, running, or waiting for its countdown);
    None when the workers could not be asked (then nothing may be taken for lost)."""
    try:
        inspect = celery.control.inspect(timeout=timeout)
        queried = inspect.query_task(*task_ids) or {}
        scheduled = inspect.scheduled() or {}
    except Exception as exc:  # noqa: BLE001 - unknown is not lost: the watchdog waits for the next pass
        log.warning("reaper: could not ask the workers what they hold (%r)", exc)
        return None
    held = {task_id for replies in queried.values() for task_id in (replies or {})}
    for entries in scheduled.values():
        held |= {str((entry.get("request") or {}).get("id")) for entry in entries or []}
    return held


def stage_queues(settings: Settings) -> list[str]:
    return [settings.control_queue, settings.cpu_queue, settings.transcribe_queue]


def without_messages(settings: Settings, celery: Celery, found: messages.JobMessages,
                     candidates: list[Dispatch]) -> list[Dispatch]:
    """The candidates (see ``recovery.stall_candidates``) that have no stage message of their
    current dispatch anywhere (``found``: what ``messages.scan`` saw): not queued, not held by a
    live worker."""
    if not candidates:
        return []
    unqueued = [c for c in candidates if (c.job_id, c.dispatch) not in found.queued]
    taken = {task_id for c in unqueued for task_id in found.taken.get((c.job_id, c.dispatch), [])}
    held = held_by_live_workers(celery, sorted(taken)) if taken else set()
    if held is None:
        return [c for c in unqueued if not found.taken.get((c.job_id, c.dispatch))]
    return [c for c in unqueued if not set(found.taken.get((c.job_id, c.dispatch), [])) & held]


def confirmed(client: redis.Redis, orphans: list[Dispatch]) -> list[Dispatch]:
    """Those of ``orphans`` that were also without a message on an earlier pass (at least
    CONFIRM_SECONDS ago, same dispatch); the others are remembered for the next pass."""
    now = time.time()
    seen = {int(k): _text(v) for k, v in client.hgetall(SUSPECTS_KEY).items()}
    ready: list[Dispatch] = []
    remember: dict[str | bytes, str | bytes] = {}
    for orphan in orphans:
        previous = seen.get(orphan.job_id, "")
        dispatch, _, first = previous.partition(":")
        if dispatch != str(orphan.dispatch) or not first:
            remember[str(orphan.job_id)] = f"{orphan.dispatch}:{now}"  # first seen now
        elif now - float(first) >= CONFIRM_SECONDS:
            ready.append(orphan)
        else:
            remember[str(orphan.job_id)] = previous
    pipe = client.pipeline()
    pipe.delete(SUSPECTS_KEY)
    if remember:
        pipe.hset(SUSPECTS_KEY, mapping=remember)  # type: ignore[arg-type]
    pipe.execute()
    return ready
