"""``api_name`` -> analysis provider. The API validates names against ``PROVIDER_NAMES``."""

from __future__ import annotations

from audiojobs.analysis.interfaces import AnalysisProvider
from audiojobs.analysis.local import LocalAnalysisProvider
from audiojobs.errors import AnalysisFailed

PROVIDER_NAMES = frozenset({"local"})


def get_provider(api_name: str) -> AnalysisProvider:
    if api_name == "local":
        return LocalAnalysisProvider()
    raise AnalysisFailed(f"unknown analysis provider {api_name!r}")
