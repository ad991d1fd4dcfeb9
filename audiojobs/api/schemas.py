"""Request bodies and query strings, validated by pydantic; errors become 422s naming the field."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model

from audiojobs.analysis.registry import LLM_PROVIDERS, PROVIDER_NAMES
from audiojobs.config import Settings
from audiojobs.errors import AudioJobsError, Forbidden, ValidationError
from audiojobs.jobs.queries import JobFilter
from audiojobs.jobs.states import JobStatus
from audiojobs.net.urlguard import Refused, UrlPolicy
from audiojobs.sources import check_local_path, roots_for
from audiojobs.transcription.languages import LANGUAGES
from audiojobs.transcription.registry import is_allowed_model
from audiojobs.users.principal import Principal

M = TypeVar("M", bound=BaseModel)
L = TypeVar("L", bound="JobListQuery")


# size: (smallest, largest) per strategy, in its unit: characters, words, Whisper tokens, seconds.
CHUNK_SIZES = {"sentences": (50, 100_000), "words": (5, 20_000), "tokens": (10, 32_000), "time": (5, 7200)}


class ChunkingOptions(BaseModel):
    """How ``audio_chunk`` cuts the transcript; every chunk keeps its start and end seconds."""

    model_config = ConfigDict(extra="forbid", strict=True)

    strategy: Literal["sentences", "words", "tokens", "time"] = Field(
        default="sentences", description="sentences (size in characters), words, tokens (Whisper's), time (seconds)")
    size: int | None = Field(default=None, ge=1, description="Largest chunk, in the strategy's unit "
                                                             "(sentences: default AUDIO_CHUNK_MAX_CHARS).")
    overlap: int | None = Field(default=None, ge=0, description="Repeated from the previous chunk, same unit.")


class SubmitRequest(BaseModel):
    """Body of ``POST /jobs/submit``: exactly one of ``url`` and ``local_path``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = Field(default=None, description="Remote audio/video URL to download (http or https).")
    local_path: str | None = Field(default=None, description="Server-local absolute file path.")
    model: str = Field(default="whisper-1", min_length=1, max_length=255, description="Transcription model.")
    perform_chunking: bool = True
    perform_analysis: bool = False
    api_name: str | None = Field(default=None, max_length=64, description="LLM provider for analysis.")
    language: str | None = Field(default=None, min_length=2, max_length=3,
                                 description="Spoken language (a Whisper code such as en, de); absent: detected.")
    word_timestamps: bool = Field(default=False, description="Time every word (verbose_json words, subtitles).")
    initial_prompt: str | None = Field(default=None, max_length=1000,
                                       description="Text that primes the decoder: names, spelling, style.")
    hotwords: str | None = Field(default=None, max_length=500,
                                 description="Words to favour (faster-whisper only).")
    vad_filter: bool = Field(default=False, description="Skip silence with voice activity detection "
                                                        "(faster-whisper only).")
    chunking: ChunkingOptions | None = Field(default=None, description="Chunking strategy, size and overlap.")
    analysis_prompt: str | None = Field(default=None, min_length=1, max_length=4000,
                                        description="Your own instruction for the analysis (an LLM api_name); "
                                                    "absent: a summary and key phrases.")
    callback_url: str | None = Field(default=None, max_length=2048,
                                     description="Receives job.completed, job.failed or job.cancelled as a "
                                                 "signed POST (see Webhooks); under the URL guard.")
    diarize: bool = Field(default=False, description="Label every segment (and word) with its speaker: A, B, …")
    multichannel: bool = Field(default=False, description="Transcribe each audio channel on its own, as one "
                                                          "speaker each: channel_0, channel_1, … (calls).")
    speakers: int | None = Field(default=None, ge=1, le=20,
                                 description="With diarize: exactly this many speakers (else estimated).")
    min_speakers: int | None = Field(default=None, ge=1, le=20,
                                     description="With diarize: at least this many speakers (default 1).")
    max_speakers: int | None = Field(default=None, ge=1, le=20,
                                     description="With diarize: at most this many speakers (default 8).")
    priority: int | None = Field(default=None, ge=0, le=9,
                                 description="Admins only: the job's level, 0-9 (9 first); absent: the owner's "
                                             "tier default. A user who passes it gets 403 priority_forbidden.")


class BatchRequest(BaseModel):
    """Body of ``POST /jobs/batch``: submit bodies, each over the shared ``defaults``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[dict[str, Any]] = Field(min_length=1, description="Submit bodies (url or local_path each), "
                                                                  "at most AUDIO_BATCH_MAX_ITEMS.")
    defaults: dict[str, Any] | None = Field(default=None, description="Options every item takes unless it "
                                                                      "sets them itself.")


class AnalyzeRequest(BaseModel):
    """Body of ``POST /jobs/{id}/analyze``: analysis again from the stored transcript."""

    model_config = ConfigDict(extra="forbid", strict=True)

    api_name: str | None = Field(default=None, max_length=64,
                                 description="Provider: local, openai, anthropic or ollama; absent: the default.")
    analysis_prompt: str | None = Field(default=None, min_length=1, max_length=4000,
                                        description="Your own instruction; absent: a summary and key phrases.")


class PriorityRequest(BaseModel):
    """Body of ``PUT /jobs/{id}/priority`` (admins)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    priority: int = Field(ge=0, le=9, description="The job's new level, 0-9 (9 first).")


class JobListQuery(BaseModel):
    """``GET /jobs``: the caller's jobs (an admin's: anyone's with ``owner_user_id``), newest first."""

    model_config = ConfigDict(extra="ignore")

    status: JobStatus | None = Field(default=None, description="only jobs in this status")
    owner_user_id: str | None = Field(default=None, min_length=1, max_length=64,
                                      description="only this user's jobs (admins; a user may name only themself)")
    created_after: dt.datetime | None = Field(default=None, description="ISO 8601; UTC when it names no zone")
    created_before: dt.datetime | None = Field(default=None, description="ISO 8601; UTC when it names no zone")
    limit: int = Field(default=50, ge=1, le=200, description="at most this many (1-200)")
    cursor: str | None = Field(default=None, min_length=1, max_length=200,
                               description="next_cursor of the previous page")

    def where(self, owner_user_id: str | None) -> JobFilter:
        def utc(value: dt.datetime | None) -> dt.datetime | None:
            if value is None or value.tzinfo is not None:
                return value
            return value.replace(tzinfo=dt.timezone.utc)

        return JobFilter(owner_user_id=owner_user_id, status=self.status, created_after=utc(self.created_after),
                         created_before=utc(self.created_before))


class AdminListQuery(JobListQuery):
    """``GET /jobs/admin/list``: everyone's jobs unless ``owner_user_id`` names one user."""

    status_filter: JobStatus | None = Field(default=None, description="alias of status")


class OwnerQuery(BaseModel):
    owner_user_id: str | None = Field(default=None, max_length=64, description="only this user's jobs")


class KeysQuery(BaseModel):
    user_id: int | None = Field(default=None, ge=1, description="another user's keys (admins)")


class IdempotencyHeaders(BaseModel):
    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", min_length=1, max_length=255,
        description="replay protection: the same key and body return the same job")


def _first_error(exc: pydantic.ValidationError) -> ValidationError:
    err = exc.errors(include_url=False)[0]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]).lstrip(".") or None
    kind = err["type"]
    if kind == "extra_forbidden":
        return ValidationError(f"unknown field {field!r}", code="unknown_field", field=field)
    if kind == "missing":
        return ValidationError(f"{field} is required", code="missing_field", field=field)
    message = f"{field}: {err['msg']}" if field else err["msg"]
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    return ValidationError(message, code=code, field=field)


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _first_error(exc) from None


# No request needs more than a few levels; deeper JSON is refused before anything walks it.
MAX_JSON_DEPTH = 32


def load_json(raw: bytes | str, what: str, field: str | None = None) -> Any:
    """``raw`` parsed as JSON: 422 ``invalid_json`` if it is not JSON, 400 ``invalid_json`` if it
    nests arrays or objects deeper than :data:`MAX_JSON_DEPTH` levels."""
    too_deep = ValidationError(f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels", code="invalid_json",
                               field=field, http_status=400)
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"{what} is not valid JSON", code="invalid_json", field=field) from None
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise too_deep
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return data


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, whatever Content-Type the client sent (curl -d sends a form type)."""
    if not raw.strip():
        raise ValidationError("the request body must be a JSON object", code="invalid_body")
    data = load_json(raw, "the request body")
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object", code="invalid_body")
    return data


def validate_submit(body: dict[str, Any], settings: Settings, principal: Principal,
                    upload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a submit body and return the job's payload: the options with defaults filled in.
    ``upload``: the multipart file's name and size, when the media came with the request."""
    req = parse_model(SubmitRequest, body)
    if req.priority is not None and not principal.is_admin:
        raise Forbidden("only an admin may set a job's priority; your jobs take your tier's",
                        code="priority_forbidden", field="priority")
    if upload is not None:
        if req.url is not None or req.local_path is not None:
            raise ValidationError("with a file upload, give neither url nor local_path", code="conflicting_source",
                                  field="url" if req.url is not None else "local_path")
    elif req.url is None and req.local_path is None:
        raise ValidationError("give exactly one of url and local_path", code="missing_source", field="url")
    if req.url is not None and req.local_path is not None:
        raise ValidationError("give only one of url and local_path, not both", code="conflicting_source",
                              field="local_path")
    payload = req.model_dump()
    level = payload.pop("priority")
    if level is not None:
        payload["_priority"] = level  # internal: the job row's priority, not an option of the pipeline
    if upload is not None:
        payload["upload"] = upload
    elif req.url is not None:
        try:
            UrlPolicy.from_settings(settings).check_url(req.url)
        except Refused as refusal:
            raise ValidationError(refusal.message, code=refusal.code, field="url") from None
    else:
        assert req.local_path is not None
        local = check_local_path(req.local_path, roots_for(settings, principal.user_id, principal.is_admin))
        # Internal keys (leading "_") tell the worker where and what the checked file was.
        payload.update(local_path=str(local.path), _local_root=str(local.root), _local_file_id=local.identity)
    if not is_allowed_model(req.model, settings):
        raise ValidationError(f"unknown model {req.model!r}; allowed: {', '.join(sorted(settings.model_names))}, "
                              "optionally prefixed with faster-whisper: or openai-whisper:",
                              code="unknown_model", field="model")
    if req.chunking is not None:
        payload["chunking"] = _chunking(req.chunking)
    if req.language is not None and req.language not in LANGUAGES:
        raise ValidationError(f"unknown language {req.language!r}; use a Whisper language code such as en or de",
                              code="unknown_language", field="language")
    if req.perform_analysis and req.api_name is None:
        payload["api_name"] = settings.analysis_default_api
    if req.analysis_prompt is not None and not req.perform_analysis:
        raise ValidationError("analysis_prompt needs perform_analysis true", code="invalid_option",
                              field="analysis_prompt")
    _check_speakers(req)
    check_analysis(req.api_name, req.analysis_prompt, settings)
    if req.callback_url is not None:
        try:
            UrlPolicy.from_settings(settings).check_url(req.callback_url)
        except Refused as refusal:
            raise ValidationError(refusal.message, code=refusal.code, field="callback_url") from None
    return payload


def _check_speakers(req: SubmitRequest) -> None:
    if req.diarize and req.multichannel:
        raise ValidationError("diarize and multichannel exclude each other: multichannel takes each channel as one "
                              "speaker, diarize tells speakers apart in a mix", code="conflicting_option",
                              field="multichannel", details={"fields": ["diarize", "multichannel"]})
    counts = {name: getattr(req, name) for name in ("speakers", "min_speakers", "max_speakers")}
    given = [name for name, value in counts.items() if value is not None]
    if given and not req.diarize:
        raise ValidationError(f"{given[0]} needs diarize true", code="invalid_option", field=given[0])
    if req.speakers is not None and (req.min_speakers is not None or req.max_speakers is not None):
        other = "min_speakers" if req.min_speakers is not None else "max_speakers"
        raise ValidationError(f"give speakers (an exact count) or {other}, not both", code="conflicting_option",
                              field="speakers")
    low, high = req.min_speakers or 1, req.max_speakers or 8
    if low > high:
        raise ValidationError(f"min_speakers ({low}) is above max_speakers ({high})", code="invalid_value",
                              field="min_speakers")


def validate_batch(body: dict[str, Any], settings: Settings, principal: Principal) -> list[dict[str, Any]]:
    """Every item of a batch checked as a submit (422 naming ``items[i].field``): the jobs' payloads."""
    req = parse_model(BatchRequest, body)
    if len(req.items) > settings.batch_max_items:
        raise ValidationError(f"items: at most {settings.batch_max_items} jobs in a batch (AUDIO_BATCH_MAX_ITEMS)",
                              code="too_many_items", field="items")
    payloads = []
    for index, item in enumerate(req.items):
        try:
            payloads.append(validate_submit({**(req.defaults or {}), **item}, settings, principal))
        except AudioJobsError as exc:
            exc.field = f"items[{index}]" + (f".{exc.field}" if exc.field else "")
            exc.message = f"items[{index}]: {exc.message}"
            raise
    return payloads


def check_analysis(api_name: str | None, prompt: str | None, settings: Settings) -> str:
    """The provider an analysis request resolves to; 422 for an unknown one or a prompt it cannot follow."""
    if api_name is not None and api_name not in PROVIDER_NAMES:
        raise ValidationError(f"unknown api_name {api_name!r}; allowed: {', '.join(sorted(PROVIDER_NAMES))}",
                              code="unknown_api_name", field="api_name")
    resolved = api_name or settings.analysis_default_api
    if prompt is not None and resolved not in LLM_PROVIDERS:
        raise ValidationError(f"api_name {resolved!r} makes an extractive summary and follows no prompt; "
                              f"choose one of {', '.join(sorted(LLM_PROVIDERS))}", code="invalid_option",
                              field="analysis_prompt")
    return resolved


FORM_FLAGS = {"perform_chunking", "perform_analysis", "word_timestamps", "vad_filter", "diarize", "multichannel"}
FORM_INTS = {"priority", "speakers", "min_speakers", "max_speakers"}


FILE_FIELD = (bytes, Field(description="The audio or video (at most the tier's file size)."))
# ``POST /jobs/submit`` as multipart/form-data: the file and the JSON body's other fields as text.
SubmitForm = create_model("SubmitForm", file=FILE_FIELD, **{  # type: ignore[call-overload]
    name: (Literal["true", "false"] | None if name in FORM_FLAGS else int | None if name in FORM_INTS else str | None,
           Field(default=None, description=f"{info.description or ''}{' (as JSON text)' * (name == 'chunking')}"))
    for name, info in SubmitRequest.model_fields.items() if name not in {"url", "local_path"}})


class TranscriptionForm(BaseModel):
    """``POST /transcriptions``: OpenAI's multipart form."""

    file: bytes = FILE_FIELD[1]
    model: str | None = Field(default=None, description="whisper-1 or any allowed model name")
    language: str | None = Field(default=None, description="a Whisper language code; absent: detected")
    prompt: str | None = Field(default=None, description="text that primes the decoder")
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"] | None = None
    temperature: Literal["0"] | None = None
    timestamp_granularities: list[Literal["word", "segment"]] | None = Field(
        default=None, alias="timestamp_granularities[]")


def form_body(form: Any) -> dict[str, Any]:
    """Multipart form fields as a submit body: flags from true/false, chunking from JSON, the rest text."""
    body: dict[str, Any] = {}
    for name in form:
        if not isinstance(name, str) or not name:
            raise ValidationError("a form field has no readable name", code="invalid_body", field="form")
        value = form.get(name)
        if name in FORM_FLAGS and value.strip().lower() in {"true", "false", "1", "0"}:
            body[name] = value.strip().lower() in {"true", "1"}
        elif name in FORM_INTS and value.strip().isascii() and value.strip().isdigit():
            body[name] = int(value.strip())
        elif name == "chunking":
            body[name] = load_json(value, "chunking", field="chunking")
        else:
            body[name] = value
    return body


def _chunking(options: ChunkingOptions) -> dict[str, Any]:
    low, high = CHUNK_SIZES[options.strategy]
    if options.size is None:
        if options.strategy != "sentences":
            raise ValidationError(f"chunking.size is required with the {options.strategy} strategy",
                                  code="missing_field", field="chunking.size")
        if options.overlap is not None:
            raise ValidationError("chunking.overlap needs chunking.size", code="missing_field", field="chunking.size")
        return {"strategy": "sentences"}
    if not low <= options.size <= high:
        raise ValidationError(f"chunking.size must be {low}-{high} for the {options.strategy} strategy",
                              code="invalid_value", field="chunking.size")
    overlap = options.overlap or 0
    if overlap >= options.size:
        raise ValidationError("chunking.overlap must be smaller than chunking.size", code="invalid_value",
                              field="chunking.overlap")
    return {"strategy": options.strategy, "size": options.size, "overlap": overlap}


def parse_job_list(args: Any, model: type[L]) -> L:
    """A job list's query string (``status_filter`` is the admin list's alias of ``status``)."""
    data = {name: args.get(name) for name in model.model_fields if args.get(name) is not None}
    if "status" not in data and data.get("status_filter") is not None:
        data["status"] = data["status_filter"]
    return parse_model(model, data)


def parse_job_id(raw: str, field: str = "job_id") -> int:
    """A path or query id: a positive integer, else 422 naming ``field``."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ValidationError(f"{field} must be a positive integer", code="invalid_value", field=field)
    return int(raw)


def parse_idempotency_key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header: 1-255 printable ASCII characters, or absent."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= 255 or not raw.isascii() or not raw.isprintable():
        raise ValidationError("Idempotency-Key must be 1-255 printable ASCII characters",
                              code="invalid_idempotency_key", field="Idempotency-Key")
    return raw


class ResultQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["json", "verbose_json", "diarized_json", "text", "srt", "vtt"] = Field(
        default="json", description="json, verbose_json, diarized_json (OpenAI's, with diarize), text, srt or vtt")


def parse_result_query(args: Any) -> ResultQuery:
    data = {"format": args.get("format")} if args.get("format") is not None else {}
    return parse_model(ResultQuery, data)


class TierRequest(BaseModel):
    """``PUT /jobs/admin/tiers/{user_id}``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tier: str = Field(min_length=1, max_length=32)
