"""``api_name`` -> analysis provider. The API validates names against ``PROVIDER_NAMES``."""

from __future__ import annotations

from audiojobs.analysis.interfaces import AnalysisProvider
from audiojobs.analysis.local import LocalAnalysisProvider
from audiojobs.config import Settings
from audiojobs.errors import AnalysisFailed

PROVIDER_NAMES = frozenset({"local", "openai", "anthropic", "ollama"})
LLM_PROVIDERS = PROVIDER_NAMES - {"local"}


def get_provider(api_name: str, settings: Settings) -> AnalysisProvider:
    if api_name == "local":
        return LocalAnalysisProvider()
    # The LLM clients (openai, anthropic, ollama) are imported only when one is used: the API
    # imports this module to validate provider names.
    from audiojobs.analysis import llm

    if api_name == "openai":
        return llm.OpenAIProvider(settings)
    if api_name == "anthropic":
        return llm.AnthropicProvider(settings)
    if api_name == "ollama":
        return llm.OllamaProvider(settings)
    raise AnalysisFailed(f"unknown analysis provider {api_name!r}")
