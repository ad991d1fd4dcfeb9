"""Admission racing itself: the API, every worker and the reaper admit at once, and a job that one of
them admits must keep its slot whatever the others do."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import admission, recovery, service
from audiojobs.jobs.models import Job
from tests.conftest import make_settings


@pytest.fixture
def setup(db_url: str, redis_url: str, tmp_path: Path) -> tuple[Settings, Celery]:
    media = tmp_path / "media"
    media.mkdir()
    settings = make_settings(db_url, redis_url, tmp_path, media)
    celery = Celery("admission-test", broker=redis_url)  # a real broker: the chains are sent, never run
    return settings, celery


def _waiting_jobs(settings: Settings, owner: str, count: int) -> list[int]:
    with session_scope(settings.effective_database_url) as s:
        return [service.create_job(s, owner_user_id=owner, payload={"url": "https://e.com/a.mp3"},
                                   queue="audio_cpu", max_retries=0, request_id="r").id for _ in range(count)]


def _admitted(settings: Settings, owner: str) -> set[int]:
    with session_scope(settings.effective_database_url) as s:
        return set(recovery.admitted_active_jobs(s).get(owner, []))


def test_an_admitter_that_loses_the_race_for_a_job_leaves_the_winners_slot(
        setup: tuple[Settings, Celery], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, celery = setup
    owner = "racer"
    (job_id,) = _waiting_jobs(settings, owner, 1)
    slots = admission.slots_for(settings)
    real_mark = recovery.mark_admitted
    rivals: list[int] = []

    def mark_after_a_rival(session: Any, jid: int) -> Any:
        # Between this process's slot and its admission, another process admits the same job.
        if not rivals:
            rivals.append(jid)
            admission._try_admit(settings, celery, slots, owner, jid, cap=1)
        return real_mark(session, jid)

    monkeypatch.setattr(recovery, "mark_admitted", mark_after_a_rival)
    admission._try_admit(settings, celery, slots, owner, job_id, cap=1)
    monkeypatch.setattr(recovery, "mark_admitted", real_mark)

    assert _admitted(settings, owner) == {job_id}
    assert slots.holders(owner) == {job_id}  # the admitted job holds its slot...
    (later,) = _waiting_jobs(settings, owner, 1)
    assert admission.admit(settings, celery, owner) == 0  # ...so the next one waits at a cap of 1
    assert _admitted(settings, owner) == {job_id}
    with session_scope(settings.effective_database_url) as s:
        job = s.get(Job, later)
        assert job is not None and job.admitted_at is None


def test_admitters_racing_with_jobs_ending_never_exceed_the_cap(setup: tuple[Settings, Celery]) -> None:
    """Six admitters (the API, workers at job start and end, the reaper) and a finisher ending
    admitted jobs, all at once: every admitted, unfinished job holds a slot, never more than the cap."""
    settings, celery = setup
    owner, cap = "busy", 2
    jobs = _waiting_jobs(settings, owner, 30)
    slots = admission.slots_for(settings)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def admitter() -> None:
        while not stop.is_set():
            try:
                admission.admit(settings, celery, owner)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

    def finisher() -> None:
        ended = 0
        while ended < len(jobs) and not stop.is_set():
            running = sorted(_admitted(settings, owner))
            seen.append(len(running))
            for job_id in running[:1]:
                with session_scope(settings.effective_database_url) as s:
                    service.fail_job(s, job_id, code="internal_error", message="ended by the test")
                admission.release(settings, celery, owner, job_id)
                ended += 1

    threads = [threading.Thread(target=admitter) for _ in range(6)] + [threading.Thread(target=finisher)]
    for t in threads:
        t.start()
    threads[-1].join(timeout=120)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert max(seen) <= cap and len(seen) >= 20, seen
    admitted = _admitted(settings, owner)
    assert len(admitted) <= cap and admitted <= slots.holders(owner)
