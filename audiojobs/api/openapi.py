"""The OpenAPI 3.1 document, written by spectree from the pydantic models the views parse with and
answer with, and the interactive docs page (Swagger UI, served from the swagger-ui-py wheel: no CDN).

Why spectree: it reads the pydantic v2 models this API already has, writes OpenAPI 3.1 and decorates
plain Flask views and blueprints. flask-openapi3 would replace the Flask and Blueprint classes and
answer invalid requests in its own error shape; apispec reads pydantic only through a third-party
plugin. The views keep their own parsing (their 422 bodies name the field, see ``errors.py``), so
spectree documents them without validating (``skip_validation``); the bodies the views send are the
same models (``api/responses.py``).

Each view declares its contract with :func:`documented` and its summary and description in its
docstring (first paragraph: summary). ``tests/unit/api/test_openapi.py`` fails on any route without a
declaration, and its schemathesis tests check real responses against the document.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from spectree import Response, SecurityScheme, SpecTree, Tag
from spectree.models import InType, SecureType, SecuritySchemeData
from swagger_ui import api_doc

from audiojobs import __version__
from audiojobs.api.responses import ErrorResponse

# What a documented view may return: a response model (spectree writes its JSON), with a status and
# headers, or anything Flask takes.
Answer = ResponseReturnValue | BaseModel | tuple[BaseModel, int] | tuple[BaseModel, int, dict[str, str]]
View = Callable[..., Answer]

ERROR_TEXT = {
    400: "Malformed request.",
    401: "Missing or invalid credentials.",
    402: "The daily minutes quota is used up (Retry-After says when it resets).",
    403: "Authenticated but not allowed (admin only).",
    404: "No such resource, or it belongs to another user.",
    405: "Method not allowed on this path.",
    409: "The resource is in the wrong state for this request.",
    413: "The request body or the file is too large.",
    415: "Unsupported media type.",
    422: "A field is missing or invalid; `error.field` names it.",
    429: "Over a rate limit, or too many queued jobs (Retry-After).",
    503: "The database or the queue is unavailable (Retry-After).",
}
ALWAYS_ERRORS = {405, 422, 429, 503}  # 429: AUDIO_RATE_LIMIT

# Tags in reading order: Swagger UI shows the groups, and the operations in each, in this order
# (the operations in the order their blueprints register them: submit first).
TAGS = {name: Tag(name=name, description=text) for name, text in (
    ("jobs", "Submit audio or video, follow the job, read the result."),
    ("openai", "OpenAI's transcription API, answered when the job is done."),
    ("quotas", "Your minutes today."),
    ("webhooks", "Signed callbacks when a job ends."),
    ("auth", "Tokens and API keys (multi-user mode)."),
    ("admin", "Every user's jobs, queues, workers and tiers (admins)."),
    ("health", "Liveness, readiness and metrics."),
)}

# Path parameters: the views parse them (422 naming the parameter); the document says what they take.
ID = {"type": "integer", "minimum": 1, "maximum": 999999999999999999}
USER = {"type": "string", "minLength": 1, "maxLength": 64}
PATH_PARAMS: dict[str, dict[str, Any]] = {"job_id": ID, "key_id": ID, "user_id": USER, "owner_user_id": USER,
                                          "delivery_id": {"type": "string", "format": "uuid"},
                                          "batch_id": {"type": "string", "format": "uuid"}}

spec = SpecTree(
    "flask", mode="strict", title="audiojobs", version=__version__, path="api/v1/docs", page_templates={},
    annotations=False,  # the views read their own input; their return annotations are for mypy only
    description="Background transcription jobs: submit audio or video, poll, read the result. "
                "Authorize with your API key (X-API-KEY) or, in multi-user mode, a token (Bearer).",
    naming_strategy=lambda model: model.__name__, nested_naming_strategy=lambda _parent, child: child,
    validation_error_model=ErrorResponse,
    security_schemes=[
        SecurityScheme(name="ApiKey", data=SecuritySchemeData(type=SecureType.API_KEY, name="X-API-KEY",
                                                              field_in=InType.HEADER)),
        SecurityScheme(name="Bearer", data=SecuritySchemeData(
            type=SecureType.HTTP, scheme="bearer",
            description="An API key, or in multi-user mode a JWT access token.")),
    ])
SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
# operationId -> other media types of its success response, with their schemas.
MEDIA: dict[str, dict[str, dict[str, Any]]] = {}
TEXT: dict[str, Any] = {"type": "string"}
# One server-sent event of GET /jobs/{id}/events: `event: job`, its id, and the job as JSON in data.
JOB_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"const": "job"}, "id": {"type": "string"},
    "data": {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"$ref": "#/components/schemas/Job"}}}}
_names: set[str] = set()


def documented(*, ok: dict[int, type[BaseModel] | None], errors: tuple[int, ...] = (), tag: str = "jobs",
               auth: bool = True, json: type[BaseModel] | None = None, form: type[BaseModel] | None = None,
               query: type[BaseModel] | None = None, headers: type[BaseModel] | None = None,
               media: dict[str, dict[str, Any]] | None = None) -> Callable[[View], Callable[..., ResponseReturnValue]]:
    """Declare a view's contract: its success responses by status, the error statuses it may answer
    (each an :class:`ErrorResponse`), the models of its body, query and headers, and the other media
    types its success response may have, with their schemas."""
    statuses = set(errors) | ALWAYS_ERRORS | ({401} if auth else set()) | ({413} if json or form else set())
    codes: dict[str, Any] = {f"HTTP_{status}": model for status, model in ok.items()}
    codes |= {f"HTTP_{status}": (ErrorResponse, ERROR_TEXT[status]) for status in sorted(statuses - set(ok))}

    def mark(view: View) -> Callable[..., ResponseReturnValue]:
        if view.__name__ in _names:
            raise ValueError(f"two views named {view.__name__}: operationIds must be unique")
        _names.add(view.__name__)
        if media:
            MEDIA[view.__name__] = media
        return spec.validate(json=json, form=form, query=query, headers=headers, resp=Response(**codes),
                             tags=[TAGS[tag]], security=SECURITY if auth else None, skip_validation=True,
                             operation_id=view.__name__)(view)

    return mark


def build_document() -> dict[str, Any]:
    """The current app's document: spectree's, with the path parameters' schemas and the non-JSON
    media types of the responses that have them."""
    doc = copy.deepcopy(spec.spec)
    doc["tags"].sort(key=lambda tag: list(TAGS).index(tag["name"]))
    for operations in doc["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    param["schema"] = PATH_PARAMS.get(param["name"], param["schema"])
                    param.pop("description", None)
                param["schema"] = _absent_not_null(param["schema"])
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            if "$ref" in form:
                model = doc["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]
                model["properties"] = {k: _absent_not_null(v) for k, v in model["properties"].items()}
            for media_type, schema in MEDIA.get(op["operationId"], {}).items():
                ok = next(code for code in op["responses"] if code.startswith("2"))
                op["responses"][ok].setdefault("content", {})[media_type] = {"schema": schema}
    return doc


def _absent_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter, header or form field is absent, never null: ``X | None`` in the
    model is documented as ``X``."""
    options = schema.get("anyOf", [])
    if len(options) == 2 and {"type": "null"} in options:
        rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
        return {**next(o for o in options if o != {"type": "null"}), **rest}
    return schema


def document() -> dict[str, Any]:
    cached: dict[str, Any] | None = current_app.extensions.get("openapi")
    if cached is None:
        cached = current_app.extensions["openapi"] = build_document()
    return cached


docs = Blueprint("docs", __name__)


@docs.get("/api/v1/openapi.json")
@docs.get("/api/v1/docs/openapi.json")  # where the docs page reads it
def openapi_json() -> ResponseReturnValue:
    return document()


def init_app(app: Flask) -> None:
    """``/api/v1/openapi.json`` and the Swagger UI page at ``/api/v1/docs`` (its assets under
    ``/api/v1/docs/static``, from the swagger-ui-py wheel)."""
    app.register_blueprint(docs)
    api_doc(app, config_rel_url="/openapi.json", url_prefix="/api/v1/docs", title="audiojobs API",
            parameters={"layout": '"BaseLayout"', "deepLinking": "true", "displayRequestDuration": "true",
                        "persistAuthorization": "true", "tryItOutEnabled": "true", "docExpansion": '"list"'})
