"""Analyses reused across jobs: keyed by (transcript hash, prompt, provider, model) in Redis.

The same audio submitted twice, or an analysis re-run with the same prompt, costs one LLM call.
Entries expire after ``AUDIO_ANALYSIS_CACHE_SECONDS`` (0 turns the cache off). A Redis error only
means a miss: the analysis is made again, never lost.
"""

from __future__ import annotations

import hashlib
import json
import logging

import redis

from audiojobs.analysis.interfaces import AnalysisProvider, AnalysisResult
from audiojobs.config import Settings
from audiojobs.redis_client import redis_client

log = logging.getLogger(__name__)


def cache_key(transcript_text: str, prompt: str | None, provider: str, model: str | None) -> str:
    transcript_hash = hashlib.sha256(transcript_text.encode()).hexdigest()
    material = json.dumps([transcript_hash, prompt, provider, model])
    return f"audiojobs:analysis:{hashlib.sha256(material.encode()).hexdigest()}"


def analyze_cached(provider: AnalysisProvider, transcript_text: str, prompt: str | None,
                   settings: Settings) -> AnalysisResult:
    """The provider's analysis, from the cache when the same one was made before."""
    if provider.name == "local" or settings.analysis_cache_seconds == 0 or settings.redis_url is None:
        return provider.analyze(transcript_text, prompt)
    client = redis_client(settings)
    key = cache_key(transcript_text, prompt, provider.name, provider.model)
    try:
        hit = client.get(key)
    except redis.RedisError as exc:
        log.warning("analysis cache unreadable (%r); analysing anew", exc)
        hit = None
    if hit:
        return AnalysisResult.from_dict(json.loads(hit)).as_cached()
    result = provider.analyze(transcript_text, prompt)
    try:
        client.set(key, json.dumps(result.to_dict()), ex=settings.analysis_cache_seconds)
    except redis.RedisError as exc:
        log.warning("analysis not cached (%r)", exc)
    return result
