"""A small HTTP client of the Audio Jobs API, for the ``audiojobs submit|jobs|status|result|cancel`` commands."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """The server said no (its error code and message), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


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
            raw = exc.read()
            try:
                error = json.loads(raw)["error"]
                field = f" ({error['field']})" if error.get("field") else ""
                raise ClientError(f"{error['message']}{field}", exc.code, error.get("code")) from None
            except (ValueError, KeyError, TypeError):
                raise ClientError(f"HTTP {exc.code} from the server", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.server}: {getattr(exc, 'reason', exc)}") from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        _status, raw, _type = self._request(method, path, body)
        result: dict[str, Any] = json.loads(raw)
        return result

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/api/v1/audio/jobs/submit", body)

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
