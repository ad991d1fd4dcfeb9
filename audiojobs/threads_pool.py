"""Celery's threads pool, as a batching transcription worker runs it (sizing.py), able to stop its
running tasks when Celery cancels them.

Celery cancels running tasks at a cold shutdown once the soft shutdown has run out (``SIGTERM``
with ``REMAP_SIGTERM=SIGQUIT``, as every audiojobs worker runs). A prefork pool kills its
processes; the threads pool cannot kill threads and says so (``NotImplementedError``), and its
process then waits for every running stage to end, however long. Here cancelling sets
``guard.STOPPING``: each running stage stops at its next safe point (between segments, batcher
windows, ffmpeg polls) with nothing recorded, as if its process had died, and its message goes back
to the broker. ``revoke --terminate`` has the same effect on every stage the worker runs.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import thread

from audiojobs.pipeline.guard import STOPPING


class _Result(thread.ApplyResult):
    def terminate(self, signal: Any = None) -> None:
        STOPPING.set()


class TaskPool(thread.TaskPool):
    def terminate_job(self, pid: Any, signal: Any = None) -> None:
        STOPPING.set()

    def on_apply(self, *args: Any, **kwargs: Any) -> _Result:
        return _Result(super().on_apply(*args, **kwargs).f)
