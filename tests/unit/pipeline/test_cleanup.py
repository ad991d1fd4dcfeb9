"""The sweep removes what finished jobs left behind, and nothing of live or recent ones: this host's
scratch copies, orphaned objects in the store (after AUDIO_STORAGE_ORPHAN_HOURS), old work dirs."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.pipeline.cleanup import sweep_work_dirs
from audiojobs.storage import PROBE_PREFIX, artifact_key, job_scratch_dir, open_store


def test_sweep_removes_only_what_finished_jobs_left(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": sqlite_url, "AUDIO_WORK_DIR": str(tmp_path / "work"),
                                  "AUDIO_STORAGE_ORPHAN_HOURS": "1"})
    with session_scope(sqlite_url) as s:
        live = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=1, request_id=None)
        done = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=1, request_id=None)
        recent = service.create_job(s, owner_user_id="1", payload={}, queue="q", max_retries=1, request_id=None)
        service.fail_job(s, done.id, code="x", message="y")
        service.fail_job(s, recent.id, code="x", message="y")
        ids = {"live": (live.id, live.uuid), "done": (done.id, done.uuid), "recent": (recent.id, recent.uuid)}
    unknown = str(uuid.uuid4())
    store = open_store(settings)
    two_hours_ago = time.time() - 7200
    for name, job_uuid in [*((n, u) for n, (_i, u) in ids.items()), ("unknown", unknown)]:
        job_scratch_dir(settings, job_uuid).mkdir(parents=True)
        key = artifact_key(job_uuid, "audio_convert", 1, "audio.wav")
        store.put_bytes(key, b"RIFF")
        if name != "recent":
            os.utime(store.local_path(key), (two_hours_ago, two_hours_ago))  # type: ignore[arg-type]
    store.put_bytes(f"{PROBE_PREFIX}left-by-a-killed-check", b"x")
    os.utime(store.local_path(f"{PROBE_PREFIX}left-by-a-killed-check"), (two_hours_ago, two_hours_ago))  # type: ignore[arg-type]
    for job_id in (ids["live"][0], ids["done"][0]):  # work directories of an earlier version
        (settings.work_path / f"job-{job_id}").mkdir(parents=True)

    # scratch: done, recent, unknown (final or gone); objects: done, unknown (recent's are too new); old dir
    assert sweep_work_dirs(settings) == 3 + 2 + 1

    assert [p.name for p in settings.scratch_path.iterdir()] == [f"job-{ids['live'][1]}"]
    left = sorted(key.split("/")[1] for key, _when in store.list_objects("jobs/"))
    assert left == sorted([ids["live"][1], ids["recent"][1]])
    assert list(store.list_objects(PROBE_PREFIX)) == []
    assert not (settings.work_path / f"job-{ids['done'][0]}").exists()
    assert (settings.work_path / f"job-{ids['live'][0]}").exists()
