"""Results people use, end to end with real workers and beat: LLM analysis through each provider's
wire protocol, analysis re-runs, and signed webhooks with retries, a delivery log and re-sends."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from audiojobs.webhooks import service as webhooks
from tests.conftest import AUTH, _redis_dbs, stage_running, wait_for_job
from tests.integration.conftest import Stack, build_stack
from tests.llm_servers import AnthropicServer, OllamaServer, OpenAIServer, WebhookReceiver
from tests.media import varied_speech
from tests.services import RedisServer

pytestmark = pytest.mark.integration
BASE = "/api/v1/audio/jobs"


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    """What a receiver does (README, *Analysis and webhooks*): the signature matches and is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    return abs(time.time() - sent) <= tolerance and hmac.compare_digest(webhooks.sign(secret, sent, body), signature)


class Servers:
    def __init__(self) -> None:
        self.openai, self.anthropic, self.ollama = OpenAIServer(), AnthropicServer(), OllamaServer()
        self.hooks = WebhookReceiver()

    def stop(self) -> None:
        for server in (self.openai, self.anthropic, self.ollama, self.hooks):
            server.stop()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    found = Servers()
    yield found
    found.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rstack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, test_redis: RedisServer,
           servers: Servers) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"results-{request.param}")
    pg = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    env = {"OPENAI_BASE_URL": f"{servers.openai.base}/v1", "OPENAI_API_KEY": "sk-test",
           "ANTHROPIC_BASE_URL": servers.anthropic.base, "ANTHROPIC_API_KEY": "ak-test",
           "OLLAMA_BASE_URL": servers.ollama.base, "AUDIO_ANALYSIS_MAX_RETRIES": "1",
           "AUDIO_URL_ALLOW_HOSTS": f"127.0.0.1:{servers.hooks.port}",
           "AUDIO_WEBHOOK_BACKOFF_SECONDS": "1", "AUDIO_WEBHOOK_MAX_ATTEMPTS": "3"}
    with build_stack(request.param, tmp, test_redis.url(next(_redis_dbs) % 15 + 1), pg, extra_env=env) as stack:
        worker = stack.start_worker()
        beat = stack.start_beat()
        yield stack
        beat.stop()
        worker.stop()


def submit(stack: Stack, **body: object) -> int:
    resp = stack.client.post(f"{BASE}/submit", json=body, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    job_uuids[int(resp.get_json()["id"])] = resp.get_json()["uuid"]
    return int(resp.get_json()["id"])


def wait_until(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def calls_for(receiver: WebhookReceiver, job_id: int) -> list[tuple[dict[str, str], bytes]]:
    """The callbacks the receiver got for ``job_id`` of the stack now under test, by the job's
    uuid (the receiver serves both stacks, whose job ids both start at 1): (headers, raw body)."""
    uuid = job_uuids[job_id]
    return [(headers, raw) for (_p, headers, body), raw in zip(receiver.requests, receiver.raw_bodies, strict=True)
            if isinstance(body, dict) and body["job"]["uuid"] == uuid]


job_uuids: dict[int, str] = {}


def deliveries(stack: Stack, job_id: int) -> list[dict[str, Any]]:
    resp = stack.client.get(f"{BASE}/{job_id}/deliveries", headers=AUTH)
    assert resp.status_code == 200
    return resp.get_json()["deliveries"]


def test_openai_analysis_and_a_signed_webhook(rstack: Stack, servers: Servers) -> None:
    job_id = submit(rstack, local_path=str(rstack.media_root / "jfk.flac"), perform_analysis=True,
                    api_name="openai", callback_url=f"{servers.hooks.base}/hook?job=1")
    job = wait_for_job(rstack.client, job_id)
    assert job["status"] == "completed", job
    analysis = rstack.client.get(f"{BASE}/{job_id}/result", headers=AUTH).get_json()["analysis"]
    assert analysis["provider"] == "openai" and analysis["model"] == "gpt-4o-mini" and analysis["status"] == "completed"
    assert analysis["summary"].startswith("Summary of") and "fellow americans" in analysis["summary"].lower()
    assert analysis["key_phrases"] == ["ask not", "your country"]

    ((headers, raw),) = wait_until(lambda: calls_for(servers.hooks, job_id))
    secret = rstack.client.get("/api/v1/audio/webhooks/secret", headers=AUTH).get_json()["secret"]
    assert verify(secret, headers["x-audiojobs-timestamp"], raw, headers["x-audiojobs-signature"])
    assert not verify(secret, headers["x-audiojobs-timestamp"], raw + b" ", headers["x-audiojobs-signature"])
    body = json.loads(raw)
    assert headers["x-audiojobs-event"] == body["event"] == "job.completed"
    assert body["job"]["status"] == "completed" and body["job"]["result_url"] == f"{BASE}/{job_id}/result"
    assert body["job"]["id"] == job_id  # an integer, as in every other response
    (first,) = wait_until(lambda: [d for d in deliveries(rstack, job_id) if d["status"] == "delivered"])
    assert first["attempts"] == 1 and first["tries"][0]["status_code"] == 200
    assert first["id"] == headers["x-audiojobs-delivery"] == body["delivery_id"]

    resp = rstack.client.post(f"{BASE}/{job_id}/deliveries/{first['id']}/resend", headers=AUTH)
    assert resp.status_code == 202 and resp.get_json()["resent_from"] == first["id"]
    calls = wait_until(lambda: (lambda c: c if len(c) == 2 else None)(calls_for(servers.hooks, job_id)))
    again = json.loads(calls[1][1])
    assert again["event"] == "job.completed" and again["delivery_id"] == resp.get_json()["id"] != first["id"]
    assert verify(secret, calls[1][0]["x-audiojobs-timestamp"], calls[1][1],
                           calls[1][0]["x-audiojobs-signature"])
    assert rstack.client.post(f"{BASE}/{job_id}/deliveries/00000000-0000-0000-0000-000000000000/resend",
                              headers=AUTH).status_code == 404


def test_rate_limited_provider_fails_the_job_and_the_webhook_is_retried(rstack: Stack, servers: Servers) -> None:
    servers.ollama.fail_next(2, 429)  # AUDIO_ANALYSIS_MAX_RETRIES=1: the try and its retry
    servers.hooks.fail_next(1, 500)  # the first callback fails; the reaper sends it again after 1 s
    job_id = submit(rstack, local_path=str(rstack.media_root / "jfk.flac"), perform_analysis=True,
                    api_name="ollama", callback_url=f"{servers.hooks.base}/hook")
    job = wait_for_job(rstack.client, job_id)
    assert (job["status"], job["error_code"], job["stage"]) == ("failed", "analysis_failed", "audio_analyze")
    assert "rate limited (429) after 1 retries" in job["error_message"]
    (delivered,) = wait_until(lambda: [d for d in deliveries(rstack, job_id) if d["status"] == "delivered"])
    assert delivered["event"] == "job.failed" and delivered["attempts"] == 2
    assert [t["status_code"] for t in delivered["tries"]] == [500, 200]
    assert delivered["tries"][0]["error"].startswith("HTTP 500")
    assert [json.loads(raw)["event"] for _h, raw in calls_for(servers.hooks, job_id)] == ["job.failed"] * 2
    resp = rstack.client.post(f"{BASE}/{job_id}/analyze", json={}, headers=AUTH)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "job_not_completed"


def test_a_cancelled_job_calls_back_too(rstack: Stack, servers: Servers) -> None:
    path = varied_speech(rstack.media_root / "sixty.flac", 60)
    job_id = submit(rstack, local_path=str(path), callback_url=f"{servers.hooks.base}/hook")
    wait_for_job(rstack.client, job_id, until=stage_running("audio_transcribe"))
    assert rstack.client.post(f"{BASE}/{job_id}/cancel", headers=AUTH).status_code == 200
    ((headers, raw),) = wait_until(lambda: calls_for(servers.hooks, job_id))
    assert headers["x-audiojobs-event"] == "job.cancelled" and json.loads(raw)["job"]["error_code"] == "cancelled"


def test_analysis_runs_again_with_another_provider_and_a_prompt(rstack: Stack, servers: Servers) -> None:
    job_id = submit(rstack, local_path=str(rstack.media_root / "jfk.flac"))  # no analysis asked
    assert wait_for_job(rstack.client, job_id)["status"] == "completed"
    url = f"{BASE}/{job_id}/analyze"
    before = len(servers.anthropic.requests)
    resp = rstack.client.post(url, json={"api_name": "anthropic", "analysis_prompt": "List the action items."},
                              headers=AUTH)
    assert resp.status_code == 202 and resp.get_json()["analysis"]["status"] == "pending"

    def analysed() -> dict[str, Any] | None:
        found = rstack.client.get(f"{BASE}/{job_id}/result", headers=AUTH).get_json()["analysis"]
        return found if found["status"] != "pending" else None

    analysis = wait_until(analysed)
    assert analysis["status"] == "completed" and analysis["provider"] == "anthropic"
    assert analysis["summary"] == "ANSWER to: List the action items." and analysis["prompt"] == "List the action items."
    assert not analysis["cached"] and len(servers.anthropic.requests) == before + 1
    # The same transcript, prompt and model again: from the cache, no request.
    assert rstack.client.post(url, json={"api_name": "anthropic", "analysis_prompt": "List the action items."},
                              headers=AUTH).status_code == 202
    assert wait_until(analysed)["cached"] is True and len(servers.anthropic.requests) == before + 1
    # No body at all: the default provider, the built-in summary.
    assert rstack.client.post(url, headers=AUTH).status_code == 202
    default = wait_until(analysed)
    assert default["provider"] == "local" and default["prompt"] is None and default["summary"]
    # Nothing was transcribed again.
    stages = rstack.client.get(f"{BASE}/{job_id}", headers=AUTH).get_json()["stages"]
    assert [s["stage"] for s in stages].count("audio_transcribe") == 1


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"api_name": "local", "analysis_prompt": "Who speaks?"}, 422, "analysis_prompt"),
    ({"api_name": "gpt"}, 422, "api_name"),
    ({"prompt": "x"}, 422, "prompt"),
])
def test_analyze_refuses_bad_requests(rstack: Stack, body: dict[str, Any], status: int, field: str) -> None:
    resp = rstack.client.post(f"{BASE}/1/analyze", json=body, headers=AUTH)
    assert resp.status_code == status and resp.get_json()["error"]["field"] == field, resp.get_json()


def test_submit_refuses_a_callback_the_guard_forbids(rstack: Stack) -> None:
    for url in ("http://169.254.169.254/latest", "http://127.0.0.1:6379/", "file:///etc/passwd"):
        resp = rstack.client.post(f"{BASE}/submit", json={"local_path": str(rstack.media_root / "jfk.flac"),
                                                          "callback_url": url}, headers=AUTH)
        assert resp.status_code == 422 and resp.get_json()["error"]["field"] == "callback_url", url
    resp = rstack.client.post(f"{BASE}/submit", json={"local_path": str(rstack.media_root / "jfk.flac"),
                                                      "analysis_prompt": "Who?"}, headers=AUTH)
    assert resp.status_code == 422 and resp.get_json()["error"]["field"] == "analysis_prompt"
