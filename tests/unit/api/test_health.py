"""/healthz answers while the process serves; /readyz says whether the database, Redis and the
object store do."""

from __future__ import annotations

from pathlib import Path

from audiojobs.api.app import create_app
from audiojobs.embedded_redis import free_port
from tests.conftest import make_settings
from tests.services import S3Server


def test_readyz_names_what_is_down(tmp_path: Path, sqlite_url: str, media_root: Path) -> None:
    settings = make_settings(sqlite_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path, media_root)
    client = create_app(settings).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable",
                               "checks": {"database": "ok", "redis": "unavailable", "storage": "ok"}}
    broken = make_settings(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none", settings.redis_url or "",
                           tmp_path, media_root)
    resp = create_app(broken).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["checks"]["database"] == "unavailable"


def test_readyz_reports_the_object_store(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path,
                                         s3_env: S3Server) -> None:
    def readyz(**storage: str) -> tuple[int, str]:
        settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, **storage)
        resp = create_app(settings).test_client().get("/readyz")
        return resp.status_code, resp.get_json()["checks"]["storage"]

    assert readyz() == (200, "ok")  # the file store under AUDIO_WORK_DIR
    assert readyz(AUDIO_STORAGE_URL="s3://audiojobs/ready", AUDIO_S3_ENDPOINT_URL=s3_env.endpoint) == (200, "ok")
    assert readyz(AUDIO_STORAGE_URL="s3://no-such-bucket", AUDIO_S3_ENDPOINT_URL=s3_env.endpoint) == \
        (503, "misconfigured")
    outage = S3Server(tmp_path / "s3")
    outage.stop()
    assert readyz(AUDIO_STORAGE_URL="s3://audiojobs", AUDIO_S3_ENDPOINT_URL=outage.endpoint) == (503, "unavailable")
