"""Priorities with a real worker and beat: a premium job overtakes a queue of free-tier jobs at every
stage, and aging keeps a free-tier job moving under a steady stream of premium jobs.

One worker process (concurrency 1) consumes every queue, so the start order is the broker's order.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope, utcnow
from audiojobs.jobs.models import Job
from tests.conftest import _redis_dbs
from tests.integration.conftest import Stack, build_stack
from tests.integration.test_fairness import add_user, first_start, multi_user_env, submit, wait_final
from tests.services import JFK_FLAC, PostgresServer, RedisServer

pytestmark = pytest.mark.integration
AGING = 2  # AUDIO_PRIORITY_AGING_SECONDS in the stream test
REAPER = 1  # AUDIO_REAPER_INTERVAL_SECONDS (tests/integration/conftest.stack_env)
FREE, PREMIUM = 2, 6  # the default tiers' levels


@pytest.fixture
def prio_stack(request: pytest.FixtureRequest, tmp_path: Path, test_redis: RedisServer,
               postgres: PostgresServer) -> Iterator[Stack]:
    env = multi_user_env(AUDIO_TIER_LIMITS_JSON='{"free": {"concurrent_jobs": 10}}', **getattr(request, "param", {}))
    with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                     extra_env=env) as stack:
        yield stack


def _rows(stack: Stack, ids: list[int]) -> dict[int, Job]:
    with session_scope(stack.settings.effective_database_url) as session:
        return {job.id: job for job in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}


def test_a_premium_job_starts_before_every_free_job_still_waiting(prio_stack: Stack) -> None:
    stack = prio_stack
    free, premium = add_user(stack, "freddy", "free"), add_user(stack, "penny", "premium")
    worker = stack.start_worker(concurrency=1)
    try:
        free_ids = [submit(stack, free, JFK_FLAC) for _ in range(10)]
        premium_id = submit(stack, premium, JFK_FLAC)
        # Queued once the request returns; a free job the worker took while the request was on its
        # way (the file copy, admission) is not one that was waiting.
        premium_submitted = utcnow()
        final = wait_final(stack, [*free_ids, premium_id], timeout=300)
    finally:
        worker.stop()
    assert {job.status for job in final.values()} == {"completed"}
    assert {final[j].priority for j in free_ids} == {FREE} and final[premium_id].priority == PREMIUM
    starts = {job_id: first_start(stack, job_id) for job_id in [*free_ids, premium_id]}
    waiting = [j for j in free_ids if starts[j].replace(tzinfo=dt.timezone.utc) > premium_submitted]
    order = sorted(starts, key=lambda j: starts[j])
    print(f"\nstart order (P = premium): {['P' if j == premium_id else f'f{free_ids.index(j)}' for j in order]}; "
          f"free jobs not started when the premium job came: {len(waiting)} of 10")
    assert len(waiting) >= 3  # a local file's download is quick: the worker began a few meanwhile
    assert all(starts[premium_id] < starts[j] for j in waiting)
    # Higher at every stage and queue (CPU and transcription): done before every free job that was
    # not done when it came, started or not.
    unfinished = [j for j in free_ids if final[j].completed_at > premium_submitted]  # type: ignore[operator]
    completed = final[premium_id].completed_at
    print(f"free jobs unfinished when it came: {len(unfinished)}; finished after it: "
          f"{sum(final[j].completed_at > completed for j in unfinished)}")  # type: ignore[operator]
    assert completed is not None and all(final[j].completed_at > completed for j in unfinished)  # type: ignore[operator]


@pytest.mark.parametrize("prio_stack", [{"AUDIO_PRIORITY_AGING_SECONDS": str(AGING)}], indirect=True)
def test_aging_moves_a_free_job_through_a_steady_premium_stream(prio_stack: Stack) -> None:
    """README, Priorities: a job of level L is never overtaken by a job of level H admitted more than
    (H - L + 1) x AUDIO_PRIORITY_AGING_SECONDS + AUDIO_REAPER_INTERVAL_SECONDS after it."""
    stack = prio_stack
    free, premium = add_user(stack, "freddy", "free"), add_user(stack, "penny", "premium")
    worker = stack.start_worker(concurrency=1)
    beat = stack.start_beat()
    premium_ids: list[int] = []
    backlog_seen: list[int] = []

    def top_up() -> None:
        """Keep five premium jobs unfinished: the worker is never short of premium work (a job's
        stages wait in the queues until it completes; with three, one look in a CI run found all
        three finished between two looks)."""
        rows = _rows(stack, premium_ids)
        unfinished = [j for j in premium_ids if rows[j].status not in {"completed", "failed", "cancelled"}]
        backlog_seen.append(len(unfinished))
        for _ in range(5 - len(unfinished)):
            premium_ids.append(submit(stack, premium, JFK_FLAC))

    try:
        deadline = time.monotonic() + 120
        while sum(j.status == "completed" for j in _rows(stack, premium_ids).values()) < 3:  # a steady state
            top_up()
            assert time.monotonic() < deadline
            time.sleep(0.3)
        free_id = submit(stack, free, JFK_FLAC)
        backlog_seen.clear()
        deadline = time.monotonic() + 240
        while _rows(stack, [free_id])[free_id].status not in {"completed", "failed"}:
            top_up()
            assert time.monotonic() < deadline, "the free job waited past the test's deadline"
            time.sleep(0.3)
        for _ in range(5):  # the stream goes on a little: the free job did not just wait for its end
            top_up()
            time.sleep(0.3)
    finally:
        beat.stop()
        worker.stop()
    rows = _rows(stack, [free_id, *premium_ids])
    job = rows[free_id]
    assert job.status == "completed" and job.admitted_at is not None and job.completed_at is not None
    window = dt.timedelta(seconds=(PREMIUM - FREE + 1) * AGING + REAPER)
    later = [rows[j] for j in premium_ids if rows[j].admitted_at > job.admitted_at + window]  # type: ignore[operator]
    overtook = [p.id for p in later if p.completed_at is not None and p.completed_at < job.completed_at]
    during = [j for j in premium_ids if job.admitted_at < rows[j].admitted_at < job.completed_at]  # type: ignore[operator]
    print(f"\nfree job waited {(job.completed_at - job.admitted_at).total_seconds():.1f} s under a premium "
          f"stream ({len(during)} premium jobs submitted meanwhile; unfinished premium jobs at least "
          f"{min(backlog_seen)}); "
          f"premium jobs admitted over {window.total_seconds():.0f} s after it that finished first: {overtook}")
    assert min(backlog_seen) >= 1  # steady: premium work was there at every look while the free job waited
    assert len(during) >= 4
    assert overtook == []
