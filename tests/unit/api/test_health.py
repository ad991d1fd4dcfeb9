"""/healthz answers while the process serves; /readyz says whether the database and Redis do."""

from __future__ import annotations

from pathlib import Path

from audiojobs import create_app
from audiojobs.embedded_redis import free_port
from tests.conftest import make_settings


def test_readyz_names_what_is_down(tmp_path: Path, sqlite_url: str, media_root: Path) -> None:
    settings = make_settings(sqlite_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path, media_root)
    client = create_app(settings).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}
    broken = make_settings(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none", settings.redis_url or "",
                           tmp_path, media_root)
    resp = create_app(broken).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["checks"]["database"] == "unavailable"
