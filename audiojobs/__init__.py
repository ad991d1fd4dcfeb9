"""audiojobs: background audio and video transcription jobs over a six-stage Celery pipeline."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("audiojobs")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"
