"""A small HTTP client of the Audio Jobs API, for the ``audiojobs submit|jobs|status|result|cancel`` commands."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class ClientError(Exception):
    """The server said no (its error code and message), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def _refusal(status: int, raw: bytes) -> ClientError:
    """The server's JSON error as a ClientError (its message, the field at fault, its code)."""
    try:
        error = json.loads(raw)["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        return ClientError(f"{error['message']}{field}", status, error.get("code"))
    except (ValueError, KeyError, TypeError):
        return ClientError(f"HTTP {status} from the server", status)


@dataclass(frozen=True)
class Client:
    server: str
    api_key: str
    timeout: float = 30.0

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
        data = json.dumps(body).encode() if body is not None else None
        if not self.server.startswith(("http://", "https://")):
            raise ClientError(f"the server URL must start with http:// or https://, not {self.server!r}")
        req = urllib.request.Request(f"{self.server.rstrip('/')}{path}", data=data, method=method,  # noqa: S310
                                     headers={"X-API-KEY": self.api_key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's server URL
                return resp.status, resp.read(), resp.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise _refusal(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.server}: {getattr(exc, 'reason', exc)}") from None

    def upload(self, path: Path, fields: dict[str, Any]) -> dict[str, Any]:
        """Submit the file at ``path`` as a multipart upload (streamed, not read into memory), with
        the other submit options as form fields; the job summary."""
        form = {name: json.dumps(value) if isinstance(value, dict) else str(value).lower()
                if isinstance(value, bool) else str(value) for name, value in fields.items()}
        try:
            with path.open("rb") as media:
                resp = httpx.post(f"{self.server.rstrip('/')}/api/v1/audio/jobs/submit", data=form,
                                  files={"file": (path.name, media)}, headers={"X-API-KEY": self.api_key},
                                  timeout=httpx.Timeout(self.timeout, write=None))
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.server}: {exc}") from None
        if resp.status_code >= 400:
            raise _refusal(resp.status_code, resp.content)
        result: dict[str, Any] = resp.json()
        return result

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        _status, raw, _type = self._request(method, path, body)
        result: dict[str, Any] = json.loads(raw)
        return result

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/api/v1/audio/jobs/submit", body)

    def batch(self, items: list[dict[str, Any]], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /jobs/batch: ``{"batch_id", "jobs"}``."""
        return self._json("POST", "/api/v1/audio/jobs/batch", {"items": items, "defaults": defaults or {}})

    def jobs(self, **query: Any) -> dict[str, Any]:
        """One page of GET /jobs: ``{"jobs", "next_cursor"}``; ``query`` as that endpoint takes it."""
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._json("GET", "/api/v1/audio/jobs" + (f"?{params}" if params else ""))

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/audio/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/audio/jobs/{job_id}/cancel")

    def result(self, job_id: int, fmt: str = "json") -> str:
        _status, raw, _type = self._request("GET", f"/api/v1/audio/jobs/{job_id}/result?format={fmt}")
        return raw.decode()
