"""LLM analysis providers: OpenAI (and any OpenAI-compatible server), Anthropic and Ollama.

Each speaks its provider's own protocol through that provider's official client library, which
retries rate limits (429, honouring ``Retry-After``), 5xx and connection errors with exponential
backoff (``AUDIO_ANALYSIS_MAX_RETRIES``); the Ollama client has no retries of its own, so tenacity
adds the same policy. When the retries are spent the stage fails ``analysis_failed`` with the
provider's reason.

A transcript longer than the model's context (``AUDIO_ANALYSIS_CONTEXT_TOKENS``, estimated at four
characters a token) is analysed map-reduce: each piece (whole sentences) is summarised on its own,
then the partial summaries are combined, in as many rounds as it takes.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from audiojobs.analysis.interfaces import AnalysisResult
from audiojobs.config import Settings
from audiojobs.errors import AnalysisFailed
from audiojobs.text import split_sentences

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # a conservative estimate for English; other languages use fewer characters a token
ANSWER_TOKENS = 1024  # kept free for the model's answer
MAX_ANSWER_TOKENS = 1024

SYSTEM = ("You analyse transcripts of recorded speech. Answer with one JSON object and nothing else: "
          '{"summary": "<a faithful summary in a few sentences>", "key_phrases": ["<up to 10 key phrases>"]}.')
MAP_PROMPT = ("This is part {part} of {parts} of a longer transcript. Summarise what this part says, "
              "keeping names, numbers and decisions; answer in plain text.")
REDUCE_PROMPT = "These are summaries of consecutive parts of one transcript, in order."
CUSTOM_SYSTEM = "You analyse transcripts of recorded speech. Follow the user's instruction about the transcript."


class ChatProvider:
    """Map-reduce and answer parsing; subclasses send one chat request."""

    name = "llm"

    def __init__(self, settings: Settings, model: str) -> None:
        self.settings = settings
        self.model = model
        self.timeout = settings.analysis_timeout
        self.retries = settings.analysis_max_retries
        self.context_chars = max(1000, (settings.analysis_context_tokens - ANSWER_TOKENS) * CHARS_PER_TOKEN)
        self._client: Any = None

    def chat(self, system: str, user: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self._client.close()

    # --- analysis ------------------------------------------------------------------------------
    def analyze(self, transcript_text: str, prompt: str | None = None) -> AnalysisResult:
        text = transcript_text.strip()
        if not text:
            return AnalysisResult(self.name, self.model, summary="", prompt=prompt)
        parts = 1
        instruction = prompt if prompt is not None else ""
        budget = self.context_chars - len(SYSTEM) - len(instruction) - 200
        while len(text) > budget:
            pieces = split_to_fit(text, budget)
            parts = max(parts, len(pieces))
            summaries = [self.chat(CUSTOM_SYSTEM, f"{MAP_PROMPT.format(part=i, parts=len(pieces))}\n\n"
                                                  f"Transcript part {i}:\n{piece}")
                         for i, piece in enumerate(pieces, 1)]
            text = "\n\n".join(f"[{i}] {s.strip()}" for i, s in enumerate(summaries, 1))
            if len(pieces) == 1:
                break  # one piece that still does not shrink: send what we have
        combined = f"{REDUCE_PROMPT}\n\n" if parts > 1 else ""
        if prompt is not None:
            answer = self.chat(CUSTOM_SYSTEM, f"{prompt}\n\n{combined}Transcript:\n{text}")
            return AnalysisResult(self.name, self.model, summary=answer.strip(), prompt=prompt, parts=parts)
        answer = self.chat(SYSTEM, f"{combined}Transcript:\n{text}")
        summary, phrases = parse_answer(answer)
        return AnalysisResult(self.name, self.model, summary=summary, key_phrases=phrases, parts=parts)

    def failed(self, what: str) -> AnalysisFailed:
        return AnalysisFailed(f"{self.name} ({self.model}): {what}")


def split_to_fit(text: str, budget: int) -> list[str]:
    """Whole sentences packed into pieces of at most ``budget`` characters (a longer sentence is cut)."""
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text) or [text]:
        while len(sentence) > budget:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:budget])
            sentence = sentence[budget:]
        if current and len(current) + 1 + len(sentence) > budget:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_answer(answer: str) -> tuple[str, list[str]]:
    """The summary and key phrases from a model's answer: the JSON object asked for, else the text."""
    text = _FENCE.sub("", answer.strip())
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("summary"), str):
            phrases = data.get("key_phrases")
            kept = [str(p).strip() for p in phrases if str(p).strip()][:20] if isinstance(phrases, list) else []
            return data["summary"].strip(), kept
    return text.strip(), []


class OpenAIProvider(ChatProvider):
    """OpenAI's chat completions; any OpenAI-compatible server by ``OPENAI_BASE_URL``."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.openai_model)
        import openai  # imported where analysis runs, never in the API process

        self._errors = openai
        # Servers such as vLLM or llama.cpp take any key; the client library insists on one.
        self._client = openai.OpenAI(api_key=settings.openai_api_key or "unused", base_url=settings.openai_base_url,
                                     timeout=self.timeout, max_retries=self.retries)

    def chat(self, system: str, user: str) -> str:
        openai = self._errors
        try:
            response = self._client.chat.completions.create(
                model=self.model, max_tokens=MAX_ANSWER_TOKENS, temperature=0.2,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
        except openai.APIStatusError as exc:
            raise self.failed(_status_reason(exc.status_code, _error_message(exc.body), self.retries)) from None
        except openai.APIConnectionError as exc:
            raise self.failed(f"{self.settings.openai_base_url} unreachable after {self.retries} retries "
                              f"({type(exc).__name__})") from None
        if not response.choices or response.choices[0].message.content is None:
            raise self.failed("the answer held no text")
        return response.choices[0].message.content


class AnthropicProvider(ChatProvider):
    """Anthropic's Messages API."""

    name = "anthropic"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.anthropic_model)
        import anthropic  # imported where analysis runs, never in the API process

        self._errors = anthropic
        self._client = anthropic.Anthropic(api_key=settings.anthropic_api_key or "unused",
                                           base_url=settings.anthropic_base_url, timeout=self.timeout,
                                           max_retries=self.retries)

    def chat(self, system: str, user: str) -> str:
        anthropic = self._errors
        try:
            message = self._client.messages.create(model=self.model, max_tokens=MAX_ANSWER_TOKENS, system=system,
                                                   messages=[{"role": "user", "content": user}])
        except anthropic.APIStatusError as exc:
            raise self.failed(_status_reason(exc.status_code, _error_message(exc.body), self.retries)) from None
        except anthropic.APIConnectionError as exc:
            raise self.failed(f"{self.settings.anthropic_base_url} unreachable after {self.retries} retries "
                              f"({type(exc).__name__})") from None
        text = "".join(getattr(block, "text", "") for block in message.content)
        if not text:
            raise self.failed("the answer held no text")
        return text


class OllamaProvider(ChatProvider):
    """Ollama's native chat API (``/api/chat``)."""

    name = "ollama"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.ollama_model)
        import ollama  # imported where analysis runs, never in the API process

        self._errors = ollama
        self._client = ollama.Client(host=settings.ollama_base_url, timeout=self.timeout)

    def chat(self, system: str, user: str) -> str:
        import tenacity

        ollama = self._errors

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, ollama.ResponseError):
                return exc.status_code == 429 or exc.status_code >= 500
            return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__.endswith(
                ("ConnectError", "TimeoutException", "ReadTimeout", "RemoteProtocolError"))

        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(self.retries + 1),
                                     wait=tenacity.wait_exponential(multiplier=0.5, max=8),
                                     retry=tenacity.retry_if_exception(retryable), reraise=True)
        try:
            response = retrying(self._client.chat, model=self.model, stream=False, options={"temperature": 0.2},
                                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
        except ollama.ResponseError as exc:
            raise self.failed(_status_reason(exc.status_code, exc.error, self.retries)) from None
        except Exception as exc:  # noqa: BLE001 - connection errors arrive as several types
            raise self.failed(f"{self.settings.ollama_base_url} unreachable after {self.retries} retries "
                              f"({type(exc).__name__})") from None
        text = response.message.content if response.message else None
        if not text:
            raise self.failed("the answer held no text")
        return text


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)
        return str(inner)
    return str(body or "")


def _status_reason(status: int, message: str, retries: int) -> str:
    if status == 429:
        what = f"rate limited (429) after {retries} retries"
    elif status >= 500:
        what = f"server error ({status}) after {retries} retries"
    elif status in (401, 403):
        what = f"the key was refused ({status}); check the provider's API key"
    elif status == 404:
        what = "model or endpoint not found (404)"
    else:
        what = f"request refused ({status})"
    return f"{what}: {message[:300]}" if message else what
