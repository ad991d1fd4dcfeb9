"""GET /jobs: the caller's own jobs, newest first, filtered, paged by a cursor that stays stable
while new jobs arrive; and the same cursor on the admin list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs.models import Job
from tests.conftest import AUTH, make_settings, make_users
from tests.unit.api.test_jobs_read import make_job

BASE = "/api/v1/audio/jobs"


def _pages(client: FlaskClient, query: str, headers: dict[str, str], between: object = None) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor = None
    while True:
        url = f"{BASE}?{query}" + (f"&cursor={cursor}" if cursor else "")
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        pages.append([job["id"] for job in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        if callable(between):
            between()


def test_own_jobs_newest_first_in_stable_pages(client: FlaskClient, settings: Settings) -> None:
    mine = [make_job(settings) for _ in range(7)]
    make_job(settings, owner="someone-else")
    arrived: list[int] = []
    pages = _pages(client, "limit=3", AUTH, between=lambda: arrived.append(make_job(settings)))
    # Jobs that arrive while paging go to the top, never into a later page: nothing repeated or skipped.
    assert pages == [mine[6:3:-1], mine[3:0:-1], mine[0:1]]
    assert len(arrived) == 2
    first = client.get(f"{BASE}?limit=3", headers=AUTH).get_json()
    assert [j["id"] for j in first["jobs"]] == arrived[::-1] + [mine[6]]
    assert first["jobs"][0]["owner_user_id"] == "1"
    assert client.get(f"{BASE}", headers=AUTH).get_json()["next_cursor"] is None  # 9 own jobs, default 50


def test_filters_by_status_and_creation_time(client: FlaskClient, settings: Settings) -> None:
    old = make_job(settings, status="failed")
    recent = [make_job(settings), make_job(settings, status="failed")]
    with session_scope(settings.effective_database_url) as session:
        session.execute(sa.update(Job).where(Job.id == old).values(
            created_at=dt.datetime(2026, 1, 15, 12, tzinfo=dt.timezone.utc)))
    jobs = client.get(f"{BASE}?status=failed", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [recent[1], old]
    jobs = client.get(f"{BASE}?created_before=2026-02-01T00:00:00Z", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [old]
    jobs = client.get(f"{BASE}?created_after=2026-02-01", headers=AUTH).get_json()["jobs"]  # no zone: UTC
    assert [j["id"] for j in jobs] == recent[::-1]
    jobs = client.get(f"{BASE}?created_after=2026-01-15T13:00:00%2B02:00&created_before=2026-01-15T14:00:00%2B01:00",
                      headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [old]  # 11:00-13:00 UTC holds 12:00


@pytest.mark.parametrize("query,field,code", [
    ("limit=0", "limit", None), ("limit=201", "limit", None), ("status=done", "status", None),
    ("created_after=yesterday", "created_after", None), ("created_before=2026-13-01", "created_before", None),
    ("cursor=bm90LWEtY3Vyc29y", "cursor", "invalid_cursor"), ("cursor=%E2%9C%93", "cursor", "invalid_cursor"),
    ("cursor=" + "a" * 300, "cursor", None)])
def test_bad_list_queries_are_422_naming_the_field(client: FlaskClient, query: str, field: str,
                                                   code: str | None) -> None:
    resp = client.get(f"{BASE}?{query}", headers=AUTH)
    assert resp.status_code == 422, resp.get_json()
    error = resp.get_json()["error"]
    assert error["field"] == field and (code is None or error["code"] == code), error


def test_users_list_only_their_own_and_admins_name_an_owner(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                            media_root: Path) -> None:
    settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE="multi_user")
    keys = make_users(settings, ("root", "admin"), ("alice", "user"), ("bob", "user"))
    client = create_app(settings).test_client()
    (root, root_id), (alice, alice_id), (bob, bob_id) = keys["root"], keys["alice"], keys["bob"]
    jobs = {who: [make_job(settings, owner=uid) for _ in range(2)]
            for who, uid in (("root", root_id), ("alice", alice_id), ("bob", bob_id))}

    def ids(headers: dict[str, str], query: str = "") -> list[int]:
        resp = client.get(f"{BASE}?{query}", headers=headers)
        assert resp.status_code == 200, resp.get_json()
        return [j["id"] for j in resp.get_json()["jobs"]]

    assert ids(alice) == jobs["alice"][::-1]
    assert ids(bob) == jobs["bob"][::-1]
    assert ids(alice, f"owner_user_id={alice_id}") == jobs["alice"][::-1]
    resp = client.get(f"{BASE}?owner_user_id={bob_id}", headers=alice)
    assert resp.status_code == 403 and resp.get_json()["error"]["field"] == "owner_user_id"
    assert ids(root) == jobs["root"][::-1]  # an admin's own by default
    assert ids(root, f"owner_user_id={bob_id}") == jobs["bob"][::-1]
    assert client.get(BASE).status_code == 401


def test_the_admin_list_pages_with_the_same_cursor(client: FlaskClient, settings: Settings) -> None:
    made = [make_job(settings, owner=owner) for owner in ("a", "b", "a", "c", "b")]
    cursor, seen = None, []
    while True:
        body = client.get(f"{BASE}/admin/list?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                          headers=AUTH).get_json()
        seen.append([j["id"] for j in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [made[4:2:-1], made[2:0:-1], made[0:1]]
    body = client.get(f"{BASE}/admin/list?owner_user_id=a&limit=1", headers=AUTH).get_json()
    second = client.get(f"{BASE}/admin/list?owner_user_id=a&limit=1&cursor={body['next_cursor']}",
                        headers=AUTH).get_json()
    assert [body["jobs"][0]["id"], second["jobs"][0]["id"]] == [made[2], made[0]] and second["next_cursor"] is None
