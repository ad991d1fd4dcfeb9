"""What a stage function gets: the job's id, options and work directory. It knows nothing of HTTP."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiojobs.config import Settings
from audiojobs.errors import StageError

SOURCE_STEM = "source"
WAV_NAME = "audio.wav"
TRANSCRIPT_NAME = "transcript.json"
CHUNKS_NAME = "chunks.json"
ANALYSIS_NAME = "analysis.json"


def job_dir_for(settings: Settings, job_id: int) -> Path:
    return settings.work_path / f"job-{job_id}"


def remove_job_dir(settings: Settings, job_id: int) -> None:
    shutil.rmtree(job_dir_for(settings, job_id), ignore_errors=True)


@dataclass(frozen=True)
class StageContext:
    job_id: int
    payload: dict[str, Any]
    settings: Settings
    run_id: int
    worker_id: str

    @property
    def job_dir(self) -> Path:
        return job_dir_for(self.settings, self.job_id)

    def ensure_job_dir(self) -> Path:
        self.job_dir.mkdir(parents=True, exist_ok=True)
        return self.job_dir

    def path(self, name: str) -> Path:
        return self.job_dir / name

    def source_file(self) -> Path:
        """The file audio_download left behind."""
        found = sorted(self.job_dir.glob(f"{SOURCE_STEM}.*")) if self.job_dir.is_dir() else []
        found = [p for p in found if not p.name.endswith((".part", ".ytdl", ".tmp"))]
        if not found:
            raise StageError("the downloaded media is missing from the job's work directory",
                             code="work_dir_missing")
        return found[0]

    def write_json(self, name: str, data: Any) -> None:
        """Write atomically, so a re-run of a stage never reads half a file."""
        self.ensure_job_dir()
        tmp = self.path(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        tmp.replace(self.path(name))

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        if not path.is_file():
            raise StageError(f"{name} from an earlier stage is missing", code="work_dir_missing")
        return json.loads(path.read_text())
