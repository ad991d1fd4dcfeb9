"""Job change notifications: every committed change of status, stage or progress reaches a
follower through Redis, the shortest stage included, in order; a lost notification is made up by
reading the row."""

from __future__ import annotations

import threading
import time

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import events, queries, recovery, service
from audiojobs.jobs.states import PIPELINE, JobStatus
from audiojobs.users.principal import Principal
from tests.unit.api.test_jobs_read import make_job

OWNER = Principal(user_id="1", is_admin=False)


def _run_every_stage_at_once(settings: Settings, job_id: int, start: threading.Event) -> None:
    """What a worker does to a job, with no work in between: six stages in a few milliseconds."""
    start.wait(10)
    url = settings.effective_database_url
    with session_scope(url) as session:
        recovery.mark_admitted(session, job_id)
    for stage in PIPELINE:
        with session_scope(url) as session:
            started = service.begin_stage(session, job_id, stage, dispatch=1, worker_id="w:1", lease_seconds=60,
                                          holder_is_dead=lambda _h: False)
            assert started.attempt is not None, started
        with session_scope(url) as session:
            service.set_progress(session, started.attempt, {"percent": 50.0})
        with session_scope(url) as session:
            service.finish_stage(session, started.attempt)
    with session_scope(url) as session:
        job = queries.get_job(session, job_id)
        assert job is not None
        service.complete_job(session, job)


def test_a_follower_sees_every_stage_of_a_job_that_runs_them_in_milliseconds(settings: Settings) -> None:
    events.publish_to(settings)
    job_id = make_job(settings)
    start = threading.Event()
    worker = threading.Thread(target=_run_every_stage_at_once, args=(settings, job_id, start))
    worker.start()
    seen = []
    began = time.monotonic()
    for fields in events.follow(settings, OWNER, job_id, max_seconds=30):
        if fields is None:
            continue
        seen.append((fields["status"], fields["stage"], fields["progress"]))
        start.set()  # subscribed and read: now the "worker" goes
    worker.join()
    stages = [stage for _status, stage, _p in seen if stage]
    assert list(dict.fromkeys(stages)) == [stage.value for stage in PIPELINE], seen
    assert seen[0][0] == JobStatus.QUEUED.value and seen[-1] == ("completed", "audio_store", 100.0)
    assert [p for *_s, p in seen] == sorted(p for *_s, p in seen)  # never backwards
    assert time.monotonic() - began < 5  # notified, not found by the 5-second recheck
    print(f"\n{len(seen)} events for six stages run in milliseconds")


def test_a_change_nobody_announced_is_found_by_reading_the_row(settings: Settings) -> None:
    job_id = make_job(settings)  # no publish_to for this database: changes go unannounced
    events._targets.pop(settings.effective_database_url, None)
    follower = events.follow(settings, OWNER, job_id, max_seconds=20)
    assert next(follower)["status"] == "queued"
    with session_scope(settings.effective_database_url) as session:
        job = queries.get_job(session, job_id)
        assert job is not None
        service.end_job(job, JobStatus.CANCELLED, "cancelled", "by the test")
    began = time.monotonic()
    fields = next(f for f in follower if f is not None)
    follower.close()
    assert fields["status"] == "cancelled" and events.QUIET_RECHECK_SECONDS - 1 <= time.monotonic() - began < 10
