"""The real audiojobs worker app with one stage made faulty, for fault-injection tests.

Start a worker with ``celery -A tests.fault_apps worker`` and ``AUDIOJOBS_TEST_FAULT`` set to:

- ``crash_convert``: audio_convert SIGKILLs its own worker process, every time;
- ``slow_convert``: audio_convert first waits 30 s (checking for cancellation), then converts.
"""

from __future__ import annotations

import os
import signal
import time

from audiojobs.pipeline import convert
from audiojobs.pipeline.context import Outcome, StageContext
from audiojobs.worker import app  # noqa: F401  (the app celery -A loads)

_real_convert = convert.run
FAULT = os.environ.get("AUDIOJOBS_TEST_FAULT", "")


def _crash(ctx: StageContext) -> Outcome:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def _slow(ctx: StageContext) -> Outcome:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ctx.check_stopped()
        time.sleep(0.1)
    return _real_convert(ctx)


if FAULT == "crash_convert":
    convert.run = _crash
elif FAULT == "slow_convert":
    convert.run = _slow
elif FAULT:
    raise RuntimeError(f"unknown AUDIOJOBS_TEST_FAULT {FAULT!r}")
