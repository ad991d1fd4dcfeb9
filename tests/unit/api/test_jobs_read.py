"""GET /jobs/{id}, /result and the admin endpoints, on job rows made through the service."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import queries, recovery, service
from audiojobs.jobs.states import Stage
from tests.conftest import AUTH

BASE = "/api/v1/audio/jobs"


def make_job(settings: Settings, owner: str = "1", status: str = "queued") -> int:
    with session_scope(settings.effective_database_url) as session:
        job = service.create_job(session, owner_user_id=owner, payload={"local_path": "/x.flac"}, queue="audio_cpu",
                                 max_retries=3, request_id=None)
        job_id = job.id
        if status != "queued":
            recovery.mark_admitted(session, job_id)
            started = service.begin_stage(session, job_id, Stage.DOWNLOAD, dispatch=1, worker_id="w:1",
                                          lease_seconds=60, holder_is_dead=lambda _h: False)
            assert started.attempt is not None
            if status == "failed":
                service.fail_job(session, job_id, code="invalid_media", message="bad file", attempt=started.attempt)
            elif status == "completed":
                service.finish_stage(session, started.attempt)
                service.complete_job(session, queries.get_job(session, job_id))  # type: ignore[arg-type]
    return job_id


def test_get_job_returns_row_fields_and_stages(client: FlaskClient, settings: Settings) -> None:
    job_id = make_job(settings, status="processing")
    body = client.get(f"{BASE}/{job_id}", headers=AUTH).get_json()
    for field in ("id", "uuid", "job_type", "status", "stage", "priority", "retry_count", "max_retries",
                  "owner_user_id", "error_code", "error_message", "created_at", "started_at", "completed_at",
                  "leased_until", "worker_id", "request_id", "updated_at", "queue", "domain"):
        assert field in body, field
    assert body["status"] == "processing" and body["stage"] == "audio_download"
    assert body["worker_id"] == "w:1" and body["leased_until"].endswith("Z")
    assert [s["stage"] for s in body["stages"]] == ["audio_download"]
    assert body["stages"][0]["status"] == "running"


@pytest.mark.parametrize("job_id,status", [("999999", 404), ("abc", 422), ("-1", 422), ("1.5", 422)])
def test_get_unknown_or_bad_job_id(client: FlaskClient, job_id: str, status: int) -> None:
    resp = client.get(f"{BASE}/{job_id}", headers=AUTH)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] in {"not_found", "invalid_value"}


def test_result_is_409_until_completed(client: FlaskClient, settings: Settings) -> None:
    queued = make_job(settings)
    failed = make_job(settings, status="failed")
    resp = client.get(f"{BASE}/{queued}/result", headers=AUTH)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "job_not_completed"
    resp = client.get(f"{BASE}/{failed}/result", headers=AUTH)
    assert resp.status_code == 409
    assert "invalid_media" in resp.get_json()["error"]["message"]


def test_other_users_job_is_404_for_non_admin(settings: Settings) -> None:
    job_id = make_job(settings, owner="alice")
    with session_scope(settings.effective_database_url) as session:
        with pytest.raises(Exception) as info:
            queries.get_job_for(session, job_id, service.Principal(user_id="bob", is_admin=False))
        assert getattr(info.value, "http_status", None) == 404
        assert queries.get_job_for(session, job_id, service.Principal(user_id="alice", is_admin=False)).id == job_id
        assert queries.get_job_for(session, job_id, service.Principal(user_id="root", is_admin=True)).id == job_id


def test_admin_list_filters_orders_and_limits(client: FlaskClient, settings: Settings) -> None:
    ids = [make_job(settings, owner="a"), make_job(settings, owner="b", status="failed"), make_job(settings, owner="a")]
    jobs = client.get(f"{BASE}/admin/list", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in jobs] == ids[::-1]
    assert [j["id"] for j in client.get(f"{BASE}/admin/list?owner_user_id=a", headers=AUTH).get_json()["jobs"]] == \
        [ids[2], ids[0]]
    failed = client.get(f"{BASE}/admin/list?status=failed", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in failed] == [ids[1]]
    assert [j["id"] for j in client.get(f"{BASE}/admin/list?status_filter=failed",
                                        headers=AUTH).get_json()["jobs"]] == [ids[1]]
    assert len(client.get(f"{BASE}/admin/list?limit=2", headers=AUTH).get_json()["jobs"]) == 2
    assert len(client.get(f"{BASE}/admin/list?limit=200", headers=AUTH).get_json()["jobs"]) == 3


@pytest.mark.parametrize("query,field", [("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"),
                                         ("limit=-5", "limit"), ("status=bogus", "status"),
                                         ("status_filter=done", "status")])
def test_admin_list_bad_query_is_422(client: FlaskClient, query: str, field: str) -> None:
    resp = client.get(f"{BASE}/admin/list?{query}", headers=AUTH)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["field"] == field


def test_admin_summary_counts_jobs_not_stages(client: FlaskClient, settings: Settings) -> None:
    make_job(settings, owner="a")
    make_job(settings, owner="a", status="completed")
    make_job(settings, owner="b", status="failed")
    body = client.get(f"{BASE}/admin/summary", headers=AUTH).get_json()
    assert body == {"counts_by_status": {"queued": 1, "processing": 0, "completed": 1, "failed": 1, "cancelled": 0},
                    "total": 3, "owner_user_id": None}
    body = client.get(f"{BASE}/admin/summary?owner_user_id=a", headers=AUTH).get_json()
    assert body["total"] == 2 and body["owner_user_id"] == "a"


def test_admin_owner_processing_reports_the_tier_cap(client: FlaskClient, settings: Settings) -> None:
    make_job(settings, owner="1", status="processing")
    make_job(settings, owner="1")
    body = client.get(f"{BASE}/admin/owner/1/processing", headers=AUTH).get_json()
    # The single user's tier is AUDIOJOBS_SINGLE_USER_TIER (premium: 10 concurrent jobs).
    assert body == {"owner_user_id": "1", "processing": 1, "limit": 10}
    assert client.get(f"{BASE}/admin/owner/nobody/processing", headers=AUTH).get_json()["processing"] == 0


def test_admin_tiers_in_single_user_mode(client: FlaskClient) -> None:
    body = client.get(f"{BASE}/admin/tiers/1", headers=AUTH).get_json()
    assert body == {"user_id": "1", "tier": "premium",
                    "limits": {"daily_minutes": None, "concurrent_jobs": 10, "max_file_mb": 500, "priority": 6}}
    assert client.get(f"{BASE}/admin/tiers/2", headers=AUTH).status_code == 404
    resp = client.put(f"{BASE}/admin/tiers/1", json={"tier": "free"}, headers=AUTH)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "single_user_tier_fixed"


def test_healthz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_api_process_never_imports_ml_libraries(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from audiojobs.api.app import create_app; from audiojobs.config import Settings; "
            "create_app(Settings.from_env({'REDIS_URL': 'redis://127.0.0.1:1/0', 'AUDIOJOBS_API_KEY': 'k', "
            f"'AUDIOJOBS_VAR_DIR': '{tmp_path}'}})); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'whisper', 'faster_whisper', 'ctranslate2', 'yt_dlp', 'numpy', 'av'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
