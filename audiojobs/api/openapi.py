"""The OpenAPI 3.1 document, generated from the routes and the pydantic models that validate them.

Each view declares its contract with :func:`operation`: the request body model (the same model the
view parses with), query parameters, the response model per status and the error statuses it may
answer. :func:`build_document` walks Flask's URL map, so an undeclared route, path parameter or
model is impossible to forget: ``tests/unit/api/test_openapi.py`` fails on any route without a
declaration, and the schemathesis test checks real responses against the document.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from audiojobs import __version__
from audiojobs.api.responses import ErrorResponse

F = TypeVar("F", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"

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
    429: "Too many queued jobs (Retry-After).",
    503: "The database or the queue is unavailable (Retry-After).",
}


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: bool = True
    tag: str = "jobs"
    description: str = ""
    headers: tuple[Param, ...] = ()
    # Other shapes of the first success response: a JSON model (anyOf with the main one) or, by
    # media type, a plain string body.
    alternatives: dict[str, type[BaseModel] | None] = field(default_factory=dict)
    # A multipart/form-data body (JSON schema of the form), beside or instead of the JSON body.
    multipart: dict[str, Any] | None = None


def form_schema(fields: dict[str, dict[str, Any]], file_description: str,
                required: tuple[str, ...] = ("file",)) -> dict[str, Any]:
    """A multipart form: the media in ``file`` and text fields."""
    return {"type": "object", "required": list(required),
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": file_description}, **fields}}


def form_fields_of(model: type[BaseModel], skip: set[str], json_fields: set[str]) -> dict[str, dict[str, Any]]:
    """A JSON body model's fields as form fields: flags as true/false, objects as JSON text."""
    fields: dict[str, dict[str, Any]] = {}
    for name, prop in model.model_json_schema()["properties"].items():
        if name in skip:
            continue
        description = prop.get("description", "")
        if prop.get("type") == "boolean":
            fields[name] = {"type": "string", "enum": ["true", "false"], "description": description}
        elif name in json_fields:
            fields[name] = {"type": "string", "description": f"{description} (as JSON text)".strip()}
        else:
            fields[name] = {"type": "string", "description": description}
    return fields


def operation(summary: str, *, responses: dict[int, type[BaseModel] | None], errors: tuple[int, ...] = (),
              body: type[BaseModel] | None = None, params: tuple[Param, ...] = (),
              path_params: dict[str, dict[str, Any]] | None = None, auth: bool = True, tag: str = "jobs",
              description: str = "", headers: tuple[Param, ...] = (),
              alternatives: dict[str, type[BaseModel] | None] | None = None,
              multipart: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Declare a view's contract for the OpenAPI document."""
    op = Operation(summary, responses, errors, body, params, path_params or {}, auth, tag, description, headers,
                   alternatives or {}, multipart)

    def mark(view: F) -> F:
        view.openapi = op  # type: ignore[attr-defined]
        return view

    return mark


ID_PARAM = {"type": "integer", "minimum": 1, "maximum": 999999999999999999}
AUTH_ERRORS = (401,)
ALWAYS_ERRORS = (405, 503)


def _models(ops: list[Operation]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorResponse]
    for op in ops:
        for model in (op.body, *op.responses.values(), *op.alternatives.values()):
            if model is not None and model not in found:
                found.append(model)
    return found


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s declared routes."""
    routes: list[tuple[str, str, Operation]] = []
    for url_rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[url_rule.endpoint]
        declared: Operation | None = getattr(view, "openapi", None)
        if declared is None:
            continue
        for method in sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((url_rule.rule, method, declared))
    models = _models([op for _r, _m, op in routes])
    _keys, top = models_json_schema([(m, "validation" if m in {op.body for *_x, op in routes} else "serialization")
                                     for m in models], ref_template=REF)
    schemas = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, op in routes:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
        slug = re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")
        entry: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": f"{method.lower()}_{slug}",
                                 "responses": {}}
        if op.description:
            entry["description"] = op.description
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": op.path_params.get(name, ID_PARAM)}
                      for name in re.findall(r"{([^}]+)}", path)]
        parameters += [{"name": p.name, "in": p.location, "required": p.required, "schema": p.schema,
                        **({"description": p.description} if p.description else {})}
                       for p in (*op.params, *op.headers)]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None or op.multipart is not None:
            content: dict[str, Any] = {}
            if op.body is not None:
                content["application/json"] = {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            if op.multipart is not None:
                content["multipart/form-data"] = {"schema": op.multipart}
            entry["requestBody"] = {"required": True, "content": content}
        for status, model in op.responses.items():
            response: dict[str, Any] = {"description": "OK" if status < 300 else "Done"}
            if model is not None:
                schema: dict[str, Any] = {"$ref": REF.format(model=model.__name__)}
                json_alternatives = [m for m in op.alternatives.values() if m is not None]
                if json_alternatives and status < 300:
                    schema = {"anyOf": [schema, *({"$ref": REF.format(model=m.__name__)} for m in json_alternatives)]}
                response["content"] = {"application/json": {"schema": schema}}
                if status < 300:
                    for media_type, alt in op.alternatives.items():
                        if alt is None:
                            response["content"][media_type] = {"schema": {"type": "string"}}
            elif status < 300 and op.alternatives:
                response["content"] = {media_type: {"schema": {"type": "string"}}
                                       for media_type, alt in op.alternatives.items() if alt is None}
            entry["responses"][str(status)] = response
        errors = set(op.errors) | set(ALWAYS_ERRORS) | (set(AUTH_ERRORS) if op.auth else set())
        if op.body is not None or op.multipart is not None:
            errors |= {413, 422}
        if op.params or op.path_params or "{" in path:
            errors.add(422)
        for status in sorted(errors):
            entry["responses"][str(status)] = {
                "description": ERROR_TEXT.get(status, "Error."),
                "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}
        if op.auth:
            entry["security"] = [{"ApiKey": []}, {"Bearer": []}]
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "audiojobs", "version": __version__,
                 "description": "Background transcription jobs: submit audio or video, poll, read the result."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "Bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key, or in multi-user mode a JWT access token."},
            },
        },
    }


docs = Blueprint("docs", __name__)


def document() -> dict[str, Any]:
    cached: dict[str, Any] | None = current_app.extensions.get("openapi")
    if cached is None:
        cached = current_app.extensions["openapi"] = build_document(current_app)
    return cached


@docs.get("/api/v1/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return current_app.response_class(json.dumps(document(), indent=1), mimetype="application/json")


@docs.get("/api/v1/docs")
def docs_page() -> ResponseReturnValue:
    """A self-contained page (no scripts, no CDN) rendered from the same document."""
    doc = document()
    parts = [f"<h1>{html.escape(doc['info']['title'])} API {html.escape(doc['info']['version'])}</h1>",
             f"<p>{html.escape(doc['info']['description'])} Machine-readable: "
             "<a href='/api/v1/openapi.json'>/api/v1/openapi.json</a>.</p>"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(op['summary'])}"
                         f"{' (authenticated)' if op.get('security') else ''}</p>")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            for param in op.get("parameters", []):
                parts.append(f"<p>{param['in']} parameter <code>{html.escape(param['name'])}</code>: "
                             f"<code>{html.escape(json.dumps(param['schema']))}</code></p>")
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                parts.append(f"<p>Body: <a href='#{ref}'>{ref}</a></p>")
            if "multipart/form-data" in content:
                parts.append("<p>Or multipart/form-data: <code>"
                             f"{html.escape(json.dumps(content['multipart/form-data']['schema']))}</code></p>")
            rows = "".join(
                f"<li>{status}: {html.escape(resp['description'])}"
                + (f" (<a href='#{ref}'>{ref}</a>)" if (ref := _ref_name(resp)) else "") + "</li>"
                for status, resp in op["responses"].items())
            parts.append(f"<ul>{rows}</ul>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>"
                     f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>")
    body = "\n".join(parts)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>audiojobs API</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}pre{{background:#f4f4f4;"
            f"padding:.5em;overflow:auto}}</style></head><body>{body}</body></html>")
    return Response(page, mimetype="text/html")


def _ref_name(response: dict[str, Any]) -> str | None:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None
