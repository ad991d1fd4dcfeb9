"""Job statuses, pipeline stages, and the one table of allowed status transitions."""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
FINAL_STATUS_VALUES = frozenset(status.value for status in FINAL_STATUSES)  # as stored and sent
# Statuses a job still works in (as stored): queued (waiting or admitted) and processing.
ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.PROCESSING.value)

# from -> the statuses it may move to. A final status moves nowhere.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # processing -> queued: a stage handed back for a later retry (reaper, transient error).
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(Exception):
    def __init__(self, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"a {current.value} job cannot become {wanted.value}")
        self.current = current
        self.wanted = wanted


def check_transition(current: JobStatus, wanted: JobStatus) -> None:
    if wanted not in TRANSITIONS[current]:
        raise InvalidTransition(current, wanted)


class Stage(str, enum.Enum):
    DOWNLOAD = "audio_download"
    CONVERT = "audio_convert"
    TRANSCRIBE = "audio_transcribe"
    CHUNK = "audio_chunk"
    ANALYZE = "audio_analyze"
    STORE = "audio_store"


PIPELINE: tuple[Stage, ...] = tuple(Stage)


def next_stage(stage: Stage) -> Stage | None:
    index = PIPELINE.index(stage)
    return PIPELINE[index + 1] if index + 1 < len(PIPELINE) else None


class StageRunStatus(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    RETRYING = "retrying"  # a transient error: the stage runs again after a backoff
    LOST = "lost"  # its worker died or its lease ran out; another attempt took over
    STALE = "stale"  # it finished after another attempt had taken the job over: its work was dropped
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"  # its worker shut down and gave the stage back
