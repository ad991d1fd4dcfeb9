"""Response bodies as pydantic models: the OpenAPI document's schemas, checked against real
responses by the schemathesis tests (so the serialisers cannot drift from the contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audiojobs.jobs.states import JobStatus, Stage, StageRunStatus


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


class JobDetail(Job):
    stages: list[StageRunOut]


class Segment(BaseModel):
    model_config = ConfigDict(extra="allow")
    start: float
    end: float
    text: str


class TranscriptOut(_Out):
    text: str
    segments: list[Segment]
    language: str | None
    duration: float | None
    model: str
    source: str | None


class ChunkOut(_Out):
    index: int
    text: str
    start: float | None
    end: float | None


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
    language: str | None
    duration: float | None
    model: str
    transcript: TranscriptOut
    chunks: list[ChunkOut]
    analysis: AnalysisOut | None


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
    resets_at: str | None


class JobList(_Out):
    jobs: list[Job]


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
