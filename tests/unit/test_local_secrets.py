"""Secrets kept under var/ (API key, Flower password, JWT secret)."""

from __future__ import annotations

from pathlib import Path


def test_secrets_created_by_racing_processes_agree(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from audiojobs.local_secrets import read_or_create_secret

    # spawn, not fork: forking a test process that holds threads (torch's, servers') can deadlock.
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        values = list(pool.map(read_or_create_secret, [tmp_path / "secret"] * 8))
    assert len(set(values)) == 1 and (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
