"""The WAV that audio_convert writes (16 kHz mono 16-bit PCM), read straight into the float32
samples both Whisper libraries take: neither needs to decode and resample it again (faster-whisper
would run it through PyAV and a full garbage collection per file; openai-whisper through ffmpeg)."""

from __future__ import annotations

import wave
from typing import Any

SAMPLE_RATE = 16000


def read_wav(path: str) -> Any | None:
    """The samples in [-1, 1] as a float32 array; None when the file is not a 16 kHz mono 16-bit WAV
    (the caller hands the path to the library, which decodes anything)."""
    import numpy as np

    try:
        with wave.open(path, "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                return None
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    audio = np.frombuffer(frames, dtype=np.int16).astype(np.float32)
    audio *= 1.0 / 32768.0
    return audio


def wav_seconds(path: str) -> float:
    """The length of a WAV file from its header (0 when it is not one)."""
    try:
        with wave.open(path, "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, OSError, EOFError, ZeroDivisionError):
        return 0.0
