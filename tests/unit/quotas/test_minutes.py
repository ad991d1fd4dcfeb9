"""The daily minutes ledger on both databases: atomic reservations, refunds, day rollover."""

from __future__ import annotations

import datetime as dt
import threading

from audiojobs.db import session_scope
from audiojobs.quotas import minutes

DAY = dt.date(2026, 11, 29)


def test_twenty_threads_reserving_at_once_never_overshoot(db_url: str) -> None:
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def reserve() -> None:
        barrier.wait()
        for _ in range(50):
            try:
                with session_scope(db_url) as session:
                    ok = minutes.reserve(session, "u1", 0.7, limit=10.0, day=DAY)
                break
            except Exception:  # noqa: BLE001 - SQLite may report a busy writer; try again like a stage would
                continue
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope(db_url) as session:
        used, _ = minutes.usage(session, "u1", DAY)
    assert len(granted) == 20
    assert granted.count(True) == 14  # 14 × 0.7 = 9.8 ≤ 10 < 15 × 0.7
    assert abs(used - 9.8) < 1e-6


def test_exact_fit_and_give_back(db_url: str) -> None:
    with session_scope(db_url) as session:
        assert minutes.reserve(session, "u2", 0.5, limit=1.0, day=DAY)
        assert minutes.reserve(session, "u2", 0.5, limit=1.0, day=DAY)  # 30 s + 30 s fit in one minute
        assert not minutes.reserve(session, "u2", 0.5, limit=1.0, day=DAY)
        minutes.give_back(session, "u2", 0.5, DAY)
        assert minutes.reserve(session, "u2", 0.5, limit=1.0, day=DAY)
        assert minutes.reserve(session, "u3", 500, limit=None, day=DAY)  # unlimited


def test_day_rollover_starts_from_zero_and_keeps_yesterday(db_url: str) -> None:
    tomorrow = DAY + dt.timedelta(days=1)
    with session_scope(db_url) as session:
        assert minutes.reserve(session, "u4", 30, limit=30, day=DAY)
        minutes.count_job_started(session, "u4", DAY)
        assert not minutes.reserve(session, "u4", 1, limit=30, day=DAY)
        assert minutes.reserve(session, "u4", 30, limit=30, day=tomorrow)
    with session_scope(db_url) as session:
        assert minutes.usage(session, "u4", DAY) == (30, 1)
        assert minutes.usage(session, "u4", tomorrow) == (30, 0)
    assert minutes.utc_today(dt.datetime(2026, 11, 29, 23, 59, 59, tzinfo=dt.timezone.utc)) == DAY
    assert minutes.utc_today(dt.datetime(2026, 11, 30, 0, 0, 1, tzinfo=dt.timezone.utc)) == tomorrow
    assert minutes.resets_at(DAY) == dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
