"""The pools on separate hosts, sharing only Redis, PostgreSQL and the S3 server (``rclone serve s3``).

Each "host" is a real process tree in mount, PID and UTS namespaces of its own (``unshare``): one
hostname for all of them (as containers may have), its own PIDs, and a private tmpfs mounted over the
scratch path (``AUDIO_WORK_DIR``), so no host can read another's files. The hosts: the API (this test
process: it never touches a worker's disk); a CPU worker (``audio_control,audio_cpu``; the
``local_path`` roots are on it); two transcription workers (``audiojobs gpu-worker``, on the CPU
here, ``AUDIO_TRANSCRIBE_QUEUE=audio_gpu``); beat.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import Job, StageRun, Transcript
from audiojobs.local_stack import WORKER_ENV
from audiojobs.storage import open_store
from tests.conftest import AUTH, _redis_dbs, wait_for_job, word_error_rate
from tests.integration.conftest import Stack, build_stack
from tests.media import jfk_repeated
from tests.services import JFK_FLAC, JFK_TEXT, MediaServer, PostgresServer, RedisServer, S3Server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                       reason="the hosts are Linux namespaces: needs unshare(1) as root"),
]
SUBMIT = "/api/v1/audio/jobs/submit"
HOSTNAME = "audiojobs-node"  # every host has this name
HOST_ENV = {"JOBS_LEASE_SECONDS": "5", "AUDIO_TRANSCRIBE_QUEUE": "audio_gpu", "AUDIO_REAPER_INTERVAL_SECONDS": "1"}


class Host:
    """A command in namespaces of its own, with a private tmpfs over ``scratch``; its log kept."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], scratch: Path, log: Path) -> None:
        self.name, self.log_path = name, log
        inner = f"hostname {HOSTNAME} && mount -t tmpfs -o size=1g tmpfs {scratch} && exec \"$@\""
        cmd = ["unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork", "--mount-proc",
               "--kill-child", "sh", "-c", inner, "host", *argv]
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env={**env, **WORKER_ENV}, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None, f"host {self.name} exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"host {self.name}: {text!r} not seen:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to everything the host runs, at once (a machine losing power)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "audiojobs.cli", *args]


@pytest.fixture
def cluster(tmp_path: Path, test_redis: RedisServer, postgres: PostgresServer,
            s3_env: S3Server) -> Iterator[tuple[Stack, S3Server, dict[str, Host]]]:
    outage = S3Server(tmp_path / "s3")  # the cluster's own store, so the test may stop it
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**outage.env, **HOST_ENV, "AUDIO_STORAGE_URL": "s3://audiojobs/cluster", "AUDIO_WORK_DIR": str(scratch),
           "AUDIOJOBS_VAR_DIR": str(scratch / "var")}
    with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                     extra_env=env) as stack:
        host_env = {**stack.env, **env}
        hosts: dict[str, Host] = {}
        try:
            for name, argv in [
                ("cpu", _cli("worker", "-Q", "audio_control,audio_cpu", "-c", "1", "-n", "cpu@%h",
                             "--without-mingle", "--without-gossip")),
                ("gpu1", _cli("gpu-worker", "-n", "gpu1@%h", "--without-mingle", "--without-gossip")),
                ("gpu2", _cli("gpu-worker", "-n", "gpu2@%h", "--without-mingle", "--without-gossip")),
                ("beat", _cli("beat")),
            ]:
                hosts[name] = Host(name, argv, host_env, scratch, tmp_path / f"host-{name}.log")
            for name in ("cpu", "gpu1", "gpu2"):
                hosts[name].wait_for(" ready.")
            yield stack, outage, hosts
        finally:
            for host in hosts.values():
                host.stop()
            outage.stop()


def _submit(stack: Stack, **body: str) -> int:
    resp = stack.client.post(SUBMIT, headers=AUTH, json=body)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def tally(stack: Stack, job_ids: list[int], label: str) -> dict[str, int]:
    with session_scope(stack.settings.effective_database_url) as session:
        status = dict(session.execute(sa.select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())
        results = dict(session.execute(sa.select(Transcript.job_id, sa.func.count())
                                       .where(Transcript.job_id.in_(job_ids)).group_by(Transcript.job_id)).all())
        twice = session.execute(sa.select(StageRun.job_id).where(
            StageRun.job_id.in_(job_ids), StageRun.status.in_(["succeeded", "skipped"]))
            .group_by(StageRun.job_id, StageRun.stage).having(sa.func.count() > 1)).all()
    counts = {"submitted": len(job_ids),
              "completed": sum(1 for j in job_ids if status.get(j) == "completed" and results.get(j) == 1),
              "lost": sum(1 for j in job_ids if status.get(j) != "completed" or not results.get(j)),
              "duplicated": sum(1 for j in job_ids if results.get(j, 0) > 1) + len(twice)}
    print(f"\n{label}: " + " / ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def test_pools_on_separate_hosts_share_only_redis_the_database_and_the_store(
        cluster: tuple[Stack, S3Server, dict[str, Host]], tmp_path: Path) -> None:
    stack, store_server, hosts = cluster
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(JFK_FLAC, site / "jfk.flac")
    server = MediaServer(site, port=stack.media_port)
    try:
        # 1. A URL, a local_path (its root is on the CPU host) and an upload through the API.
        first = [_submit(stack, url=server.url("jfk.flac")),
                 _submit(stack, local_path=str(stack.media_root / "jfk.flac")),
                 stack.upload("speech.flac", JFK_FLAC.read_bytes())]
        for job_id in first:
            job = wait_for_job(stack.client, job_id, timeout=120)
            assert job["status"] == "completed", job
            runs = {s["stage"]: s["worker_id"] for s in job["stages"]}
            # Transcription ran on a transcription host, every other stage on the CPU host: two
            # hosts of one name, told apart by their identities.
            assert runs["audio_transcribe"].split(":")[0] != runs["audio_convert"].split(":")[0]
            assert all(w.startswith(f"{HOSTNAME}/") for w in runs.values())
            result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
            assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1
        assert tally(stack, first, "three hosts, URL + local_path + upload")["completed"] == 3
        assert list(open_store(stack.settings).list_objects("")) == []  # nothing left in the store

        # 2. The transcription host dies mid-job while the second one runs: the job completes once.
        long_path = jfk_repeated(stack.media_root / "long.flac", 8)  # 88 s, window by window here
        long_id = _submit(stack, local_path=str(long_path))
        wait_for_job(stack.client, long_id, timeout=60,
                     until=lambda b: any(s["stage"] == "audio_transcribe" and s["status"] == "running"
                                         for s in b["stages"]))
        victim = next(h for h in (hosts["gpu1"], hosts["gpu2"]) if f"job {long_id}: audio_transcribe started"
                      in h.log())
        victim.kill()
        job = wait_for_job(stack.client, long_id, timeout=180)
        assert job["status"] == "completed", job
        transcribe = [s["status"] for s in job["stages"] if s["stage"] == "audio_transcribe"]
        assert transcribe == ["lost", "succeeded"], job["stages"]
        assert tally(stack, [long_id], f"transcription host {victim.name} SIGKILLed mid-job") == \
            {"submitted": 1, "completed": 1, "lost": 0, "duplicated": 0}

        # 3. The store stops for 10 s mid-run: every job still completes, none twice.
        batch = [_submit(stack, local_path=str(stack.media_root / "jfk.flac")) for _ in range(6)]
        wait_for_job(stack.client, batch[0], timeout=60, until=lambda b: b["status"] == "processing")
        store_server.stop()
        time.sleep(10)
        store_server.start()
        for job_id in batch:
            wait_for_job(stack.client, job_id, timeout=180)
        assert tally(stack, batch, "S3 store stopped for 10 s with 6 jobs in flight") == \
            {"submitted": 6, "completed": 6, "lost": 0, "duplicated": 0}
        assert list(open_store(stack.settings).list_objects("")) == []
        # Every host worked in its own tmpfs over the scratch path: nothing of theirs is on the real disk.
        assert [p for p in Path(stack.settings.work_path).rglob("*") if p.is_file()] == []
    finally:
        server.stop()
