"""What a stage function gets: the job's id, options, work directory and attempt. No HTTP here."""

from __future__ import annotations

import enum
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiojobs.config import Settings
from audiojobs.errors import StageError
from audiojobs.jobs.service import Attempt
from audiojobs.pipeline.guard import AttemptGuard

SOURCE_STEM = "source"
WAV_NAME = "audio.wav"
TRANSCRIPT_NAME = "transcript.json"
CHUNKS_NAME = "chunks.json"
ANALYSIS_NAME = "analysis.json"


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do for this job (e.g. no analysis asked for)
    FINISHED = "finished"  # the stage closed its own run and job state (audio_store)


def job_dir_for(settings: Settings, job_id: int) -> Path:
    return settings.work_path / f"job-{job_id}"


def remove_job_dir(settings: Settings, job_id: int) -> None:
    shutil.rmtree(job_dir_for(settings, job_id), ignore_errors=True)


@dataclass(frozen=True)
class StageContext:
    settings: Settings
    attempt: Attempt
    guard: AttemptGuard
    _last_report: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)

    @property
    def job_id(self) -> int:
        return self.attempt.job_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.attempt.payload

    @property
    def job_dir(self) -> Path:
        return job_dir_for(self.settings, self.job_id)

    def check_stopped(self) -> None:
        """Raise AttemptStopped when the job was cancelled or taken over; call it at safe points."""
        self.guard.check()

    def report_progress(self, progress: dict[str, Any], force: bool = False) -> None:
        """Record the stage's progress on the job, at most about once a second."""
        now = time.monotonic()
        if not force and now - self._last_report[0] < 1.0:
            return
        self._last_report[0] = now
        from audiojobs.db import session_scope
        from audiojobs.jobs import service

        with session_scope(self.settings.effective_database_url) as session:
            service.set_progress(session, self.attempt, progress)

    def ensure_job_dir(self) -> Path:
        self.job_dir.mkdir(parents=True, exist_ok=True)
        return self.job_dir

    def path(self, name: str) -> Path:
        return self.job_dir / name

    def scratch(self, name: str) -> Path:
        """A name private to this attempt, to be renamed into place when complete."""
        return self.job_dir / f".{name}.{self.attempt.fence}.{os.getpid()}.tmp"

    def source_file(self) -> Path:
        """The file audio_download left behind."""
        found = sorted(self.job_dir.glob(f"{SOURCE_STEM}.*")) if self.job_dir.is_dir() else []
        if not found:
            raise StageError("the downloaded media is missing from the job's work directory",
                             code="work_dir_missing")
        return found[0]

    def write_json(self, name: str, data: Any) -> None:
        """Write atomically, so a re-run of a stage never reads half a file."""
        self.ensure_job_dir()
        tmp = self.scratch(name)
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        tmp.replace(self.path(name))

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        if not path.is_file():
            raise StageError(f"{name} from an earlier stage is missing", code="work_dir_missing")
        return json.loads(path.read_text())
