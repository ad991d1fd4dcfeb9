"""A randomised soak: jobs through three real worker processes while the system is hurt at random.

The reaper runs every 0.5 s (the real ``reaper.reap``, from the test process), and at random moments
a whole worker (its main process and pool) or only its pool process is SIGKILLed and started again,
and the broker epoch is deleted (the reaper then takes Redis for one that came back empty). At the
end every job must have completed exactly once: completed, one stored transcript, one run of each
stage that did it (succeeded, or skipped for an analysis not asked for). It prints the seed and
the tally ``submitted / completed / lost / duplicated / rescued``.

``AUDIOJOBS_SOAK=full`` runs the full soak (200 jobs on each database); CI runs 30.
``AUDIOJOBS_SOAK_SEED=N`` replays the same random actions (their timing against the jobs varies).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from audiojobs.celery_app import producer_app
from audiojobs.db import session_scope
from audiojobs.jobs.models import Job, StageRun, Transcript
from audiojobs.jobs.states import FINAL_STATUS_VALUES, PIPELINE
from audiojobs.pipeline import broker, reaper
from tests.conftest import AUTH, _redis_dbs
from tests.integration.conftest import Stack, build_stack
from tests.services import RedisServer, WorkerProcess

pytestmark = pytest.mark.integration

FULL = os.environ.get("AUDIOJOBS_SOAK", "") == "full"
JOBS = 200 if FULL else 30
WORKERS = 3
REAPER_EVERY = 0.5
SUBMIT_EVERY = 0.2
DONE = ("succeeded", "skipped")  # a stage run that did its stage (analysis not asked for: skipped)
SOAK_ENV = {
    "JOBS_LEASE_SECONDS": "5", "AUDIO_STALL_SECONDS": "3",
    # Chaos kills any job's worker many times over; the soak is about losing nothing, not about
    # the retry budget (lease_expired after max_retries has tests of its own).
    "AUDIO_JOBS_MAX_RETRIES": "50", "AUDIO_MAX_QUEUED_PER_USER": "1000",
}


def _pool_pids(main_pid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == main_pid:
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return pids


class Chaos:
    """The workers, and the random harm done to them and to the broker."""

    def __init__(self, stack: Stack, seed: int) -> None:
        self.stack = stack
        self.rng = random.Random(seed)
        self.env = {**stack.env, **SOAK_ENV}
        self.workers = [self._start(i) for i in range(WORKERS)]
        self.done = threading.Event()
        self.counts = {"worker_killed": 0, "pool_process_killed": 0, "epoch_deleted": 0}
        self.errors: list[str] = []

    def _start(self, index: int) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.stack.tmp / f"soak-worker-{index}.log", name=f"soak-{index}@%h")
        worker.wait_ready()
        return worker

    def run(self) -> None:
        client = redis_lib.Redis.from_url(self.stack.settings.redis_url or "")
        try:
            kinds = list(self.counts)
            first = self.rng.sample(kinds, len(kinds))  # every kind of harm, early, in a seeded order
            while not self.done.wait(self.rng.uniform(0.5, 2.5)):
                action = first.pop(0) if first else self.rng.choice(kinds)
                index = self.rng.randrange(WORKERS)
                worker = self.workers[index]
                if action == "worker_killed":
                    os.killpg(worker.proc.pid, signal.SIGKILL)  # main process and pool, as the OOM killer may
                    worker.proc.wait()
                    worker.stop()
                    time.sleep(self.rng.uniform(0, 2))
                    self.workers[index] = self._start(index)
                elif action == "pool_process_killed":
                    for pid in _pool_pids(worker.proc.pid):
                        os.kill(pid, signal.SIGKILL)  # Celery's main process starts a new one
                else:
                    client.delete(broker.EPOCH_KEY)
                self.counts[action] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def _reaper_loop(stack: Stack, stop: threading.Event, errors: list[str]) -> None:
    settings = stack.settings
    celery = producer_app(settings)
    while not stop.wait(REAPER_EVERY):
        try:
            reaper.reap(settings, celery)
        except Exception as exc:  # noqa: BLE001 - a pass may meet a dying worker's Redis or DB blip
            errors.append(repr(exc))


def tally(stack: Stack, job_ids: list[int]) -> dict[str, int]:
    with session_scope(stack.settings.effective_database_url) as session:
        jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.id.in_(job_ids)))}
        results = dict(session.execute(sa.select(Transcript.job_id, sa.func.count())
                                       .where(Transcript.job_id.in_(job_ids)).group_by(Transcript.job_id)).all())
        succeeded = session.execute(sa.select(StageRun.job_id, StageRun.stage, sa.func.count())
                                    .where(StageRun.job_id.in_(job_ids), StageRun.status.in_(DONE))
                                    .group_by(StageRun.job_id, StageRun.stage)).all()
    runs: dict[int, dict[str, int]] = {}
    for job_id, stage, count in succeeded:
        runs.setdefault(job_id, {})[stage] = count

    def once(job_id: int) -> bool:
        return all(runs.get(job_id, {}).get(stage.value) == 1 for stage in PIPELINE)

    return {
        "submitted": len(job_ids),
        "completed": sum(1 for j in job_ids if jobs[j].status == "completed" and results.get(j) == 1 and once(j)),
        "lost": sum(1 for j in job_ids if jobs[j].status != "completed" or not results.get(j)),
        "duplicated": sum(1 for j in job_ids if results.get(j, 0) > 1 or any(
            count > 1 for count in runs.get(j, {}).values())),
        "rescued": sum(jobs[j].stall_rescues for j in job_ids),
    }


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_soak_every_job_completes_exactly_once(kind: str, tmp_path: Path, test_redis: RedisServer,
                                              request: pytest.FixtureRequest) -> None:
    seed = int(os.environ.get("AUDIOJOBS_SOAK_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nsoak on {kind}: seed {seed} (AUDIOJOBS_SOAK_SEED={seed} replays it), {JOBS} jobs, "
          f"{WORKERS} worker processes")
    pg = request.getfixturevalue("postgres") if kind == "postgresql" else None
    with build_stack(kind, tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), pg, extra_env=SOAK_ENV) as stack:
        chaos = Chaos(stack, seed)
        stop_reaper, reaper_errors = threading.Event(), []
        threads = [threading.Thread(target=chaos.run, daemon=True),
                   threading.Thread(target=_reaper_loop, args=(stack, stop_reaper, reaper_errors), daemon=True)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            job_ids: list[int] = []
            for _ in range(JOBS):  # over a few seconds, so harm finds jobs at every stage
                time.sleep(SUBMIT_EVERY)
                resp = stack.client.post("/api/v1/audio/jobs/submit", headers=AUTH,
                                         json={"local_path": str(stack.media_root / "jfk.flac")})
                assert resp.status_code == 202, resp.get_json()
                job_ids.append(resp.get_json()["id"])
            deadline = time.monotonic() + (1500 if FULL else 300)
            while True:
                with session_scope(stack.settings.effective_database_url) as session:
                    active = session.scalar(sa.select(sa.func.count()).select_from(Job).where(
                        Job.id.in_(job_ids), Job.status.not_in(FINAL_STATUS_VALUES)))
                if not active:
                    break
                assert time.monotonic() < deadline, f"{active} jobs still active; chaos {chaos.counts}"
                time.sleep(1)
        finally:
            chaos.done.set()
            threads[0].join(timeout=120)
            stop_reaper.set()
            threads[1].join(timeout=30)
            chaos.stop()
        elapsed = time.monotonic() - started
        counts = tally(stack, job_ids)
        print(f"soak on {kind} ({elapsed:.0f} s, chaos {chaos.counts}): "
              + " / ".join(f"{k} {v}" for k, v in counts.items()))
        print(f"reaper passes that failed (retried 0.5 s later): {len(reaper_errors)} {reaper_errors[:3]}")
        assert chaos.errors == []
        assert counts["completed"] == JOBS and counts["lost"] == 0 and counts["duplicated"] == 0, counts
        assert all(chaos.counts.values()), chaos.counts  # each kind of harm happened

