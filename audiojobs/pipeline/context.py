"""What a stage function gets: the job's id, options, artifacts, scratch directory and attempt.

Artifacts between stages live in the object store (``storage/``): a stage reads what earlier stages
wrote (``fetch``, ``read_json``) and writes its own (``publish``, ``write_json``) under keys named
by job, stage and attempt; the job records them as current when the stage succeeds, fenced, so a
stale attempt's objects never replace the current ones. Files are worked on in this host's private
scratch directory (``AUDIO_SCRATCH_DIR``); a copy fetched there once is not fetched again. No HTTP
here.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import ArtifactMissing
from audiojobs.jobs import service
from audiojobs.jobs.attempts import Attempt
from audiojobs.pipeline.guard import AttemptGuard
from audiojobs.storage import SOURCE_STEM, ArtifactStore, artifact_key, job_prefix, job_scratch_dir, open_store

log = logging.getLogger(__name__)

WAV_NAME = "audio.wav"
CHANNELS_NAME = "channels.wav"  # multichannel jobs: every channel, 16 kHz 16-bit PCM
TRANSCRIPT_NAME = "transcript.json"
CHUNKS_NAME = "chunks.json"
ANALYSIS_NAME = "analysis.json"


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do for this job (e.g. no analysis asked for)
    FINISHED = "finished"  # the stage closed its own run and job state (audio_store)


@dataclass(frozen=True)
class StageContext:
    settings: Settings
    attempt: Attempt
    guard: AttemptGuard
    level: int = 0  # the priority level the stage's message came at
    _last_report: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)
    # What this attempt stored: artifact name -> key (recorded on the job when the stage succeeds).
    outputs: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def job_id(self) -> int:
        return self.attempt.job_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.attempt.payload

    @property
    def job_dir(self) -> Path:
        """This host's scratch directory for the job (not shared with other hosts)."""
        return job_scratch_dir(self.settings, self.attempt.job_uuid)

    @property
    def store(self) -> ArtifactStore:
        return open_store(self.settings)

    def check_stopped(self) -> None:
        """Raise AttemptStopped when the job was cancelled or taken over; call it at safe points."""
        self.guard.check()

    def report_progress(self, progress: dict[str, Any], force: bool = False) -> None:
        """Record the stage's progress on the job, at most about once a second."""
        now = time.monotonic()
        if not force and now - self._last_report[0] < 1.0:
            return
        self._last_report[0] = now
        with session_scope(self.settings.effective_database_url) as session:
            service.set_progress(session, self.attempt, progress)

    def ensure_job_dir(self) -> Path:
        self.job_dir.mkdir(parents=True, exist_ok=True)
        return self.job_dir

    def path(self, name: str) -> Path:
        """A file in this host's scratch directory for the job (created on first use: a stage may be
        the first of the job to run on this host)."""
        return self.ensure_job_dir() / name

    def scratch(self, name: str) -> Path:
        """A name private to this attempt, to be renamed into place when complete."""
        return self.ensure_job_dir() / f".{name}.{self.attempt.fence}.{os.getpid()}.tmp"

    def _key(self, name: str) -> str:
        return artifact_key(self.attempt.job_uuid, self.attempt.stage.value, self.attempt.fence, name)

    def _copy_of(self, key: str) -> Path:
        """Where this host keeps its copy of object ``key`` (keys are never rewritten: a copy is current)."""
        return self.job_dir / key.removeprefix(job_prefix(self.attempt.job_uuid))

    def publish(self, name: str, path: Path) -> str:
        """Store the file at ``path`` as this attempt's artifact ``name`` (the file is moved: this
        host keeps it as its copy of the object); the job's current one once the stage succeeds."""
        key = self._key(path.name if name == SOURCE_STEM else name)
        self.store.put_file(key, path)
        if self.store.local_path(key) is not None:
            path.unlink(missing_ok=True)  # the store is this host's disk: no second copy
        else:
            copy = self._copy_of(key)
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, copy)
        self.outputs[name] = key
        return key

    def has(self, name: str) -> bool:
        return name in self.attempt.artifacts

    def _current(self, name: str) -> str:
        key = self.attempt.artifacts.get(name)
        if key is None:
            raise ArtifactMissing(f"{name} from an earlier stage is missing")
        return key

    def fetch(self, name: str) -> Path:
        """A local file holding artifact ``name`` (fetched from the store unless this host has it)."""
        key = self._current(name)
        local = self.store.local_path(key)
        if local is not None:
            return local
        copy = self._copy_of(key)
        if not copy.is_file():
            self.store.fetch_file(key, copy)
        return copy

    def source_file(self) -> Path:
        """The media audio_download (or the API, for an upload) stored."""
        return self.fetch(SOURCE_STEM)

    def write_json(self, name: str, data: Any) -> None:
        """Store ``data`` as this attempt's artifact ``name`` (written whole or not at all)."""
        key = self._key(name)
        self.store.put_bytes(key, json.dumps(data, ensure_ascii=False).encode())
        self.outputs[name] = key

    def read_json(self, name: str) -> Any:
        return json.loads(self.store.get_bytes(self._current(name)))
