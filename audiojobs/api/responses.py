"""Response bodies as pydantic models: the one source of both the OpenAPI document's schemas and
the JSON the views send (each view builds its model from rows with ``of``, and the model writes the
JSON), checked against real responses by the schemathesis tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from audiojobs import formats
from audiojobs.jobs import models as rows
from audiojobs.jobs.snapshot import iso_utc, job_fields
from audiojobs.jobs.states import JobStatus, Stage, StageRunStatus
from audiojobs.users.models import ApiKey
from audiojobs.webhooks.models import WebhookDelivery
from audiojobs.webhooks.states import DeliveryStatus


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # some errors add details (resets_at, minutes_used, ...)
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, for a person.")
    field: str | None = Field(default=None, description="The request field at fault, when there is one.")


class ErrorResponse(_Out):
    error: ErrorBody


class JobSummary(_Out):
    id: int
    uuid: str
    domain: str
    queue: str
    job_type: str
    status: JobStatus

    @classmethod
    def of(cls, job: rows.Job) -> JobSummary:
        return cls(id=job.id, uuid=job.uuid, domain=job.domain, queue=job.queue, job_type=job.job_type,
                   status=JobStatus(job.status))


class Job(JobSummary):
    stage: Stage | None
    priority: int
    retry_count: int
    max_retries: int
    owner_user_id: str
    payload: dict[str, Any] = Field(description="The submitted options, defaults filled in.")
    error_code: str | None
    error_message: str | None
    attempt_errors: list[dict[str, Any]] = Field(description="Errors of earlier attempts that were retried.")
    media_duration_seconds: float | None
    progress: float = Field(ge=0, le=100, description="0-100 across all stages (within transcription, "
                                                      "from segment end time over duration).")
    eta_seconds: float | None = Field(description="Seconds until transcription ends, while it runs.")
    progress_detail: dict[str, Any] | None = Field(description="What each stage reported last.")
    leased_until: str | None
    worker_id: str | None
    request_id: str | None
    created_at: str | None
    started_at: str | None
    updated_at: str | None
    completed_at: str | None
    cancelled_at: str | None
    retry_at: str | None

    @classmethod
    def of(cls, job: rows.Job) -> Job:
        return cls(**job_fields(job))


class StageRunOut(_Out):
    stage: Stage
    attempt: int
    status: StageRunStatus
    worker_id: str | None
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    error_code: str | None
    error_message: str | None

    @classmethod
    def of(cls, run: rows.StageRun) -> StageRunOut:
        return cls(stage=Stage(run.stage), attempt=run.attempt, status=StageRunStatus(run.status),
                   worker_id=run.worker_id, started_at=iso_utc(run.started_at), finished_at=iso_utc(run.finished_at),
                   duration_seconds=run.duration_seconds, error_code=run.error_code,
                   error_message=run.error_message)


class JobDetail(Job):
    stages: list[StageRunOut]

    @classmethod
    def of(cls, job: rows.Job) -> JobDetail:
        return cls(**job_fields(job), stages=[StageRunOut.of(run) for run in job.stage_runs])


class Segment(BaseModel):
    model_config = ConfigDict(extra="allow")
    start: float
    end: float
    text: str


class SpeakerOut(_Out):
    label: str = Field(description="A, B, … in order of first appearance")
    total_seconds: float = Field(description="How long they spoke (their segments' lengths)")
    first_start: float = Field(description="When they first spoke, in seconds")


class TranscriptOut(_Out):
    text: str
    segments: list[Segment]
    speakers: list[SpeakerOut] | None = Field(default=None, description="With diarize: who spoke.")
    language: str | None
    duration: float | None
    model: str
    source: str | None


class ChunkOut(_Out):
    index: int
    text: str
    start: float | None
    end: float | None
    speakers: list[str] | None = Field(default=None, description="With diarize: who speaks in it, in order.")


class AnalysisOut(_Out):
    provider: str = Field(description="api_name that made it: local, openai, anthropic or ollama.")
    model: str | None
    summary: str = Field(description="The summary, or the answer to the user's own prompt.")
    key_phrases: list[str]
    prompt: str | None = Field(description="The user's own prompt; null: the built-in summary.")
    parts: int = Field(description="Transcript pieces summarised first (map-reduce over the context).")
    cached: bool = Field(description="Reused from an identical earlier analysis (transcript, prompt, model).")
    status: Literal["pending", "completed", "failed"] = Field(
        description="pending while a POST /jobs/{id}/analyze re-run works.")
    error_code: str | None
    error_message: str | None
    updated_at: str | None

    @classmethod
    def of(cls, analysis: rows.Analysis) -> AnalysisOut:
        return cls(provider=analysis.provider, model=analysis.model, summary=analysis.summary,
                   key_phrases=analysis.key_phrases, prompt=analysis.prompt, parts=analysis.parts,
                   cached=analysis.cached, status=analysis.status,  # type: ignore[arg-type]
                   error_code=analysis.error_code, error_message=analysis.error_message,
                   updated_at=iso_utc(analysis.updated_at))


class AnalysisRun(_Out):
    job_id: int
    analysis: AnalysisOut


class WebhookTry(_Out):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


class Delivery(_Out):
    id: str = Field(description="Sent as X-Audiojobs-Delivery; receivers de-duplicate by it.")
    event: Literal["job.completed", "job.failed", "job.cancelled"]
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    resent_from: str | None = Field(description="id of the delivery this one sends again.")
    tries: list[WebhookTry]

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> Delivery:
        pending = delivery.status == DeliveryStatus.PENDING.value
        return cls(id=delivery.uuid, event=delivery.event, url=delivery.url,  # type: ignore[arg-type]
                   status=delivery.status, attempts=delivery.attempts,  # type: ignore[arg-type]
                   next_attempt_at=iso_utc(delivery.next_attempt_at) if pending else None,
                   last_status_code=delivery.last_status_code, last_error=delivery.last_error,
                   created_at=iso_utc(delivery.created_at) or "", delivered_at=iso_utc(delivery.delivered_at),
                   resent_from=delivery.resent_from, tries=[WebhookTry(**t) for t in delivery.log])


class Deliveries(_Out):
    job_id: int
    deliveries: list[Delivery]


class WebhookSecretOut(_Out):
    secret: str = Field(description="Signs your callbacks: HMAC-SHA256 over TIMESTAMP.BODY (see Webhooks).")
    created_at: str


class Result(_Out):
    job_id: int
    status: JobStatus
    text: str
    segments: list[Segment]
    speakers: list[SpeakerOut] | None = Field(default=None, description="With diarize: who spoke (label, "
                                                                          "total seconds, first start).")
    language: str | None
    duration: float | None
    model: str
    transcript: TranscriptOut
    chunks: list[ChunkOut]
    analysis: AnalysisOut | None

    @classmethod
    def of(cls, job: rows.Job, transcript: rows.Transcript, chunks: list[rows.TranscriptChunk],
           analysis: rows.Analysis | None) -> Result:
        body: dict[str, Any] = {"text": transcript.text, "segments": transcript.segments,
                                "speakers": formats.speakers(transcript.segments),
                                "language": transcript.language, "duration": transcript.duration_seconds,
                                "model": transcript.model}
        return cls(job_id=job.id, status=JobStatus(job.status), **body,
                   transcript=TranscriptOut(**body, source=transcript.source),
                   chunks=[ChunkOut(index=c.chunk_index, text=c.text, start=c.start_seconds, end=c.end_seconds,
                                    speakers=c.speakers) for c in chunks],
                   analysis=None if analysis is None else AnalysisOut.of(analysis))


class Usage(_Out):
    user_id: str
    tier: str | None
    day: str
    minutes_used: float
    minutes_limit: float | None
    minutes_remaining: float | None
    jobs_started: int
    concurrent_jobs_limit: int
    max_file_mb: float
    priority: int = Field(description="The level your jobs start at, 0-9 (9 first).")
    resets_at: str | None


class JobList(_Out):
    jobs: list[Job] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: this is the last page.")


class BatchAccepted(_Out):
    batch_id: str
    created_at: str | None
    jobs: list[JobSummary] = Field(description="In the order of the items.")

    @classmethod
    def of(cls, batch: rows.JobBatch, jobs: list[rows.Job]) -> BatchAccepted:
        return cls(batch_id=batch.id, created_at=iso_utc(batch.created_at), jobs=[JobSummary.of(j) for j in jobs])


class BatchOut(_Out):
    batch_id: str
    created_at: str | None
    counts: dict[str, int] = Field(description="Jobs by status, every status listed.")
    total: int
    jobs: list[Job] = Field(description="In the order of the items.")

    @classmethod
    def of(cls, batch: rows.JobBatch, jobs: list[rows.Job]) -> BatchOut:
        counts = {status.value: 0 for status in JobStatus}
        for job in jobs:
            counts[job.status] += 1
        return cls(batch_id=batch.id, created_at=iso_utc(batch.created_at), counts=counts, total=len(jobs),
                   jobs=[Job.of(j) for j in jobs])


class StatusSummary(_Out):
    counts_by_status: dict[str, int]
    total: int
    owner_user_id: str | None


class OwnerProcessing(_Out):
    owner_user_id: str
    processing: int
    limit: int


class TierLimitsOut(_Out):
    daily_minutes: float | None
    concurrent_jobs: int
    max_file_mb: float
    priority: int = Field(description="The level of the tier's jobs, 0-9 (9 first).")


class TierOut(_Out):
    user_id: str
    tier: str
    limits: TierLimitsOut


class Tokens(_Out):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None


class ApiKeyOut(_Out):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    @classmethod
    def fields_of(cls, row: ApiKey) -> dict[str, Any]:
        return {"id": row.id, "user_id": row.user_id, "name": row.name, "prefix": row.prefix,
                "created_at": iso_utc(row.created_at), "revoked_at": iso_utc(row.revoked_at),
                "last_used_at": iso_utc(row.last_used_at)}

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyOut:
        return cls(**cls.fields_of(row))


class NewApiKey(ApiKeyOut):
    key: str = Field(description="The key itself; shown only once.")


class ApiKeyList(_Out):
    keys: list[ApiKeyOut]


class Health(_Out):
    status: str


class Readiness(_Out):
    status: str
    checks: dict[str, str]


class QueueDepths(_Out):
    queues: dict[str, int] = Field(description="Messages waiting in each queue.")
    workers: dict[str, list[str]] = Field(description="Workers online and the queues each consumes.")


class VerboseTranscription(BaseModel):
    """OpenAI's verbose_json transcription."""

    model_config = ConfigDict(extra="forbid")
    task: str
    language: str | None
    duration: float | None
    text: str
    segments: list[Segment]
    words: list[dict[str, Any]] | None = None


class OpenAITranscription(_Out):
    text: str


class ResultBody(RootModel[Result | VerboseTranscription]):
    """GET /jobs/{id}/result as JSON: the result (format=json) or OpenAI's verbose_json."""


class TranscriptionBody(RootModel[OpenAITranscription | VerboseTranscription]):
    """POST /transcriptions as JSON: {"text"} (json) or OpenAI's verbose_json."""
