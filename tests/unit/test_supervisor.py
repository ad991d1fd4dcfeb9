"""`audiojobs up` keeps the system up: a child that dies is restarted with backoff, one that keeps
crashing at start stops everything, and a stop request ends everything. Real child processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from audiojobs.local_stack import Supervisor


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie that nobody reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_killed_child_and_what_it_left_behind_are_replaced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    grandchild_pid = tmp_path / "grandchild.pid"
    # A child that forks a long-lived process of its own (as a Celery worker forks its pool).
    script = ("import os, subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(grandchild_pid)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    sup = Supervisor(backoff=(0.2,), fast_seconds=0.5, max_fast_crashes=3, poll_seconds=0.05)
    first = sup.start("worker", [sys.executable, "-c", script], os.environ)
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(sup.wait()), daemon=True)
    waiter.start()
    try:
        _wait_for(grandchild_pid.exists)
        orphan = int(grandchild_pid.read_text())
        time.sleep(0.6)  # past fast_seconds: this death is a blip, not a crash loop
        grandchild_pid.unlink()
        os.kill(first.pid, signal.SIGKILL)  # as the OOM killer does
        _wait_for(lambda: sup.children[0].proc.pid != first.pid and grandchild_pid.exists())
        _wait_for(lambda: _gone(orphan))
        assert sup.children[0].proc.poll() is None
    finally:
        sup.request_stop()
        waiter.join(timeout=30)
    assert result == [0]
    assert sup.children[0].proc.poll() is not None  # the stop ended the restarted child too
    err = capsys.readouterr().err
    assert "worker exited with code -9; restarting it in 0.2 s" in err and "worker restarted" in err


def test_a_child_that_keeps_crashing_at_start_stops_everything(capsys: pytest.CaptureFixture) -> None:
    sup = Supervisor(backoff=(0.05, 0.1), fast_seconds=5, max_fast_crashes=3, poll_seconds=0.05)
    bystander = sup.start("api", [sys.executable, "-c", "import time; time.sleep(60)"], os.environ)
    sup.start("beat", [sys.executable, "-c", "import sys; sys.exit(3)"], os.environ)
    started = time.monotonic()
    assert sup.wait() == 3
    assert time.monotonic() - started < 10
    assert bystander.poll() is not None  # everything stopped with it
    err = capsys.readouterr().err
    assert err.count("beat exited with code 3; restarting") == 2
    assert "beat exited with code 3, 3 times in a row" in err and "giving up" in err


def test_run_local_roots_leave_the_home_directory_out_unless_asked(tmp_path: Path) -> None:
    from audiojobs.config import Settings
    from audiojobs.local_stack import default_local_roots

    settings = Settings.from_env({"AUDIOJOBS_VAR_DIR": str(tmp_path / "var")})
    samples = tmp_path / "shared" / "fixtures" / "audio"
    samples.mkdir(parents=True)
    repo = tmp_path / "repo"
    assert default_local_roots(settings, repo) == (str(tmp_path / "var" / "inbox"), str(samples.resolve()))
    assert str(Path.home()) in default_local_roots(settings, repo, with_home=True)
