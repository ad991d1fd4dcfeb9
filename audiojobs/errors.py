"""One exception tree for the whole service.

Every error carries a stable ``code`` (part of the API contract), an HTTP status for the API, and
whether it is worth retrying when a pipeline stage raises it.
"""

from __future__ import annotations

from typing import Any


class AudioJobsError(Exception):
    """Base of every error audiojobs raises on purpose."""

    code = "internal_error"
    http_status = 500
    transient = False

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 http_status: int | None = None, headers: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.field = field
        self.headers = headers or {}
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return {"error": body}


class ConfigError(AudioJobsError):
    """A setting has a value the service cannot run with."""

    code = "config_error"


# --- API errors ------------------------------------------------------------------------------
class ValidationError(AudioJobsError):
    """The request is well-formed HTTP but a field is wrong. Always names the field when it can."""

    code = "validation_error"
    http_status = 422


class Unauthorized(AudioJobsError):
    code = "unauthorized"
    http_status = 401


class Forbidden(AudioJobsError):
    code = "forbidden"
    http_status = 403


class NotFound(AudioJobsError):
    code = "not_found"
    http_status = 404


class Conflict(AudioJobsError):
    code = "conflict"
    http_status = 409


class QuotaExceeded(AudioJobsError):
    """The user's daily minutes are used up (at submit: 402; in the pipeline: the job fails)."""

    code = "quota_exceeded"
    http_status = 402


class PayloadTooLarge(AudioJobsError):
    code = "file_too_large"
    http_status = 413


class TooManyRequests(AudioJobsError):
    code = "too_many_queued_jobs"
    http_status = 429


class ServiceUnavailable(AudioJobsError):
    code = "service_unavailable"
    http_status = 503
    transient = True


# --- Pipeline errors: the job ends failed with this code, unless it is transient -------------
class StageError(AudioJobsError):
    """A stage could not do its work for this job; permanent unless ``transient``."""

    code = "stage_failed"


class InvalidMedia(StageError):
    code = "invalid_media"


class SourceNotFound(StageError):
    code = "source_not_found"  # the job's file or URL is gone (``not_found`` is HTTP 404 only)


class ForbiddenSource(StageError):
    code = "forbidden_url"


class DownloadFailed(StageError):
    code = "download_failed"


class DiarizationUnavailable(StageError):
    """A job asked for speakers and this worker has no diarization packages."""

    code = "diarization_unavailable"


class TransientStageError(StageError):
    """Worth another try: a network blip, a database or broker hiccup, a 5xx from a remote."""

    code = "transient_error"
    transient = True


class SourceTooLarge(StageError):
    code = "source_too_large"  # found at download (``file_too_large`` is the 413 refusal at submit only)


class ModelUnavailable(StageError):
    code = "model_unavailable"


class AnalysisFailed(StageError):
    code = "analysis_failed"


# --- Storage (the object store between stages) -------------------------------------------------
class StorageUnavailable(TransientStageError):
    """The object store did not answer, timed out or answered 5xx: try again later, nothing lost."""

    code = "storage_unavailable"
    http_status = 503


class StorageMisconfigured(StageError):
    """The object store refused us for a reason another try will not change (no such bucket,
    credentials refused): the message names the setting to fix."""

    code = "storage_misconfigured"
    http_status = 503


class ArtifactMissing(StageError):
    """An artifact a stage needs is not in the object store."""

    code = "artifact_missing"
