"""The LLM providers through their real client libraries against local servers speaking each
provider's wire protocol: answers, retried rate limits and errors, map-reduce, the cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest

from audiojobs.analysis.cache import analyze_cached
from audiojobs.analysis.interfaces import AnalysisResult
from audiojobs.analysis.llm import parse_answer, split_to_fit
from audiojobs.analysis.registry import get_provider
from audiojobs.config import Settings
from audiojobs.errors import AnalysisFailed
from tests.llm_servers import AnthropicServer, OllamaServer, OpenAIServer, _Server
from tests.services import free_port

JFK = ("And so, my fellow Americans, ask not what your country can do for you, "
       "ask what you can do for your country.")
SERVERS = {"openai": OpenAIServer, "anthropic": AnthropicServer, "ollama": OllamaServer}


@pytest.fixture(params=sorted(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, _Server]]:
    server = SERVERS[request.param]()
    yield request.param, server
    server.stop()


def provider_settings(name: str, server: _Server, redis_url: str | None = None, **env: str) -> Settings:
    base = {"openai": {"OPENAI_BASE_URL": f"{server.base}/v1", "OPENAI_API_KEY": "sk-test",
                       "AUDIO_OPENAI_MODEL": "gpt-test"},
            "anthropic": {"ANTHROPIC_BASE_URL": server.base, "ANTHROPIC_API_KEY": "ak-test",
                          "AUDIO_ANTHROPIC_MODEL": "claude-test"},
            "ollama": {"OLLAMA_BASE_URL": server.base, "AUDIO_OLLAMA_MODEL": "llama-test"}}[name]
    return Settings.from_env({"AUDIO_ANALYSIS_MAX_RETRIES": "2", "AUDIO_ANALYSIS_TIMEOUT_SECONDS": "10",
                              **({"REDIS_URL": redis_url} if redis_url else {}), **base, **env})


def analyze(name: str, settings: Settings, text: str, prompt: str | None = None) -> AnalysisResult:
    with closing(get_provider(name, settings)) as provider:
        return provider.analyze(text, prompt)


def test_each_provider_summarises_through_its_own_protocol(served: tuple[str, _Server]) -> None:
    name, server = served
    result = analyze(name, provider_settings(name, server), JFK)
    assert result.provider == name and result.model.endswith("-test") and result.parts == 1
    assert result.summary.startswith(f"Summary of {len('Transcript:') + 1 + len(JFK)} characters: Transcript:")
    assert result.key_phrases == ["ask not", "your country"]
    path, headers, body = server.requests[0]
    if name == "openai":
        assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-test"
        assert body["model"] == "gpt-test" and body["messages"][0]["role"] == "system"
    elif name == "anthropic":
        assert path == "/v1/messages" and "anthropic-version" in headers
        assert "ak-test" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
        assert body["model"] == "claude-test" and "JSON object" in body["system"]
    else:
        assert path == "/api/chat" and body["model"] == "llama-test" and body["stream"] is False
    assert JFK in str(body)


@pytest.mark.parametrize("status", [429, 500])
def test_rate_limits_and_server_errors_are_retried(served: tuple[str, _Server], status: int) -> None:
    name, server = served
    server.fail_next(2, status)
    result = analyze(name, provider_settings(name, server), JFK)
    assert result.summary.startswith("Summary of")
    assert len(server.requests) == 3  # two failures, then the answer


@pytest.mark.parametrize("status", [429, 500])
def test_when_retries_are_spent_the_analysis_fails_clearly(served: tuple[str, _Server], status: int) -> None:
    name, server = served
    server.fail_next(10, status)
    with pytest.raises(AnalysisFailed) as info:
        analyze(name, provider_settings(name, server), JFK)
    assert info.value.code == "analysis_failed"
    expected = "rate limited (429) after 2 retries" if status == 429 else f"server error ({status}) after 2 retries"
    assert info.value.message.startswith(f"{name} (") and expected in info.value.message
    assert len(server.requests) == 3


def test_a_refused_key_is_not_retried() -> None:
    server = OpenAIServer()
    try:
        server.fail_next(1, 401)
        with pytest.raises(AnalysisFailed) as info:
            analyze("openai", provider_settings("openai", server), JFK)
        assert "the key was refused (401)" in info.value.message and len(server.requests) == 1
    finally:
        server.stop()


def test_an_unreachable_server_fails_with_its_address() -> None:
    port = free_port()
    settings = Settings.from_env({"OLLAMA_BASE_URL": f"http://127.0.0.1:{port}", "AUDIO_ANALYSIS_MAX_RETRIES": "1"})
    with pytest.raises(AnalysisFailed) as info:
        analyze("ollama", settings, JFK)
    assert f"127.0.0.1:{port} unreachable after 1 retries" in info.value.message


def test_a_transcript_longer_than_the_context_is_summarised_map_reduce(served: tuple[str, _Server]) -> None:
    name, server = served
    transcript = " ".join(f"Sentence number {i} says something about topic {i % 7}." for i in range(300))
    settings = provider_settings(name, server, AUDIO_ANALYSIS_CONTEXT_TOKENS="1300")  # ~1100 characters a call
    result = analyze(name, settings, transcript)
    sent = [str(body) for body in server.chat_requests()]
    maps = [s for s in sent if "of a longer transcript" in s]
    print(f"\n{name}: {len(transcript)} characters in {result.parts} parts, {len(sent)} requests")
    assert len(maps) >= result.parts > 5  # the first round sends each part; later rounds, fewer
    assert all(len(s) < 1300 * 4 for s in sent)  # every request fits the context
    assert "summaries of consecutive parts" in sent[-1] and result.summary.startswith("Summary of")
    assert "Sentence number 0 " in sent[0] and "Sentence number 299 " in " ".join(sent)


def test_a_custom_prompt_gets_the_models_own_answer(served: tuple[str, _Server]) -> None:
    name, server = served
    result = analyze(name, provider_settings(name, server), JFK, "List the action items.")
    assert result.summary == "ANSWER to: List the action items." and result.key_phrases == []
    assert result.prompt == "List the action items."


def test_the_cache_answers_the_same_transcript_prompt_and_model_once(redis_url: str) -> None:
    server = OpenAIServer()
    settings = provider_settings("openai", server, redis_url)
    other_model = provider_settings("openai", server, redis_url, AUDIO_OPENAI_MODEL="gpt-other")
    try:
        with closing(get_provider("openai", settings)) as provider, \
                closing(get_provider("openai", other_model)) as other:
            first = analyze_cached(provider, JFK, None, settings)
            again = analyze_cached(provider, JFK, None, settings)
            assert not first.cached and again.cached and again.summary == first.summary
            assert len(server.requests) == 1
            analyze_cached(provider, JFK, "Who speaks?", settings)  # another prompt: another request
            analyze_cached(other, JFK, None, other_model)  # another model
            analyze_cached(provider, JFK + " Thank you.", None, settings)  # another transcript
            assert len(server.requests) == 4
    finally:
        server.stop()


@pytest.mark.parametrize(("answer", "expected"), [
    ('{"summary": "S.", "key_phrases": ["a", "b"]}', ("S.", ["a", "b"])),
    ('```json\n{"summary": "S.", "key_phrases": ["a"]}\n```', ("S.", ["a"])),
    ('Here you go: {"summary": "S."}', ("S.", [])),
    ("Just prose, no JSON.", ("Just prose, no JSON.", [])),
])
def test_answers_are_parsed_leniently(answer: str, expected: tuple[str, list[str]]) -> None:
    assert parse_answer(answer) == expected


def test_split_to_fit_keeps_whole_sentences() -> None:
    text = "One two three. Four five six. " * 20
    pieces = split_to_fit(text, 100)
    assert all(len(p) <= 100 for p in pieces) and all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text.strip()
