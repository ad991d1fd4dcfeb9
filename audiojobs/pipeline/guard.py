"""The heartbeat of a running stage attempt.

A daemon thread renews the attempt's lease every third of
``JOBS_LEASE_SECONDS`` and checks every second whether the attempt still holds its job. When it
does not (the job was cancelled,
failed elsewhere, deleted, or taken over after a lost lease), ``check()`` raises
``AttemptStopped``: stage code calls it at safe points (between segments, while ffmpeg runs, on
download progress) and so stops within about a second, with no side effect.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import lru_cache
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.jobs.attempts import Attempt

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# Set when a threads-pool worker's soft shutdown has run out: running stages stop at their next
# safe point (a prefork worker kills its pool processes instead; threads cannot be killed).
STOPPING = threading.Event()


class AttemptStopped(Exception):
    """The attempt no longer holds its job; ``reason`` says why (``cancelled``, ``taken_over`` …)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerStopping(Exception):
    """The worker is going away: the stage stops with nothing recorded, as if its process had been
    killed (its run stays open for the next worker to close as lost, its message unacknowledged)."""


@lru_cache(maxsize=1)
def _machine() -> str:
    """The kernel's boot id (one per machine and boot; containers share their host's) and this
    process's PID namespace (one per container): what tells apart hosts that share a hostname."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        boot = "noboot"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{boot}-{namespace}"


def host_identity() -> str:
    """This host as leases name it: ``hostname/bootid-pidnamespace``. Two machines or containers with
    the same hostname (and the same PIDs) never share it, so neither judges the other's processes."""
    return f"{socket.gethostname()}/{_machine()}"


def worker_id() -> str:
    return f"{host_identity()}:{os.getpid()}"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` (a ``worker_id``) is a process of this very host that no longer exists.
    Any other holder (another host or container, or an id from before identities named both) is
    judged by its lease alone."""
    host, _, pid = holder.rpartition(":")
    if host != host_identity() or not pid.isdigit():
        return False  # another host's worker: only its lease tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class AttemptGuard:
    """``deadline`` (monotonic seconds): past it, ``check()`` raises SoftTimeLimitExceeded, as
    Celery's soft time limit does in a prefork pool (a threads pool has no time limits of its own)."""

    def __init__(self, settings: Settings, attempt: Attempt, deadline: float | None = None) -> None:
        self.settings = settings
        self.attempt = attempt
        self.deadline = deadline
        self.reason: str | None = None
        self._stop = threading.Event()
        self._renew_every = max(1.0, settings.lease_seconds / 3)
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{attempt.job_id}", daemon=True)

    def __enter__(self) -> AttemptGuard:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> None:
        """Raise AttemptStopped if the attempt has lost its job."""
        if self.reason is not None:
            raise AttemptStopped(self.reason)
        if STOPPING.is_set():
            raise WorkerStopping()
        if self.deadline is not None and time.monotonic() > self.deadline:
            from celery.exceptions import SoftTimeLimitExceeded

            raise SoftTimeLimitExceeded()

    def _run(self) -> None:
        last_renew = time.monotonic()
        db_url = self.settings.effective_database_url
        while not self._stop.wait(POLL_SECONDS):
            try:
                with session_scope(db_url) as session:
                    if time.monotonic() - last_renew >= self._renew_every:
                        reason = service.renew_lease(session, self.attempt, self.settings.lease_seconds)
                        last_renew = time.monotonic()
                    else:
                        reason = service.attempt_lost_reason(session, self.attempt)
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the stage; the lease decides
                log.warning("job %s: heartbeat failed: %r", self.attempt.job_id, exc)
                continue
            if reason is not None:
                log.info("job %s: attempt %s stops: %s", self.attempt.job_id, self.attempt.fence, reason)
                self.reason = reason
                return
