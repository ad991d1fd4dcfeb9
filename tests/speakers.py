"""Real recorded speech of different people, with known turns, for the diarization tests and the
benchmark.

- ``pyannote.audio`` 4.0.7 (MIT) ships ``sample.wav``: 30 s of two people talking (16 kHz mono)
  and ``sample.rttm``, its reference turns. Only the wheel is fetched (``pip download --no-deps``,
  into ``.cache/fixtures``; pyannote.audio is not installed), and the two files are checked by
  their SHA-256.
- ``jfk.flac`` (../shared/fixtures/audio) is a third voice.

``two_speakers()`` is the sample as it is; ``three_speakers()`` is the sample, a second of
silence, jfk.flac, a second, and the sample's first 15 s again. Their references are
pyannote.core annotations; jfk's turn is his speech as Silero VAD finds it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import wave
import zipfile
from pathlib import Path
from typing import Any

from tests.services import JFK_FLAC, REPO_ROOT

WHEEL = "pyannote.audio==4.0.7"
CACHE = REPO_ROOT / ".cache" / "fixtures" / "pyannote-audio-4.0.7"
SHA256 = {"sample.wav": "c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e",
          "sample.rttm": "d78fe62c69d8e6dcbb42c26adfce83faccb374c5a1e6d987fe37f85f1c173c87"}
RATE = 16000
GAP = 1.0  # seconds of silence between the recordings of three_speakers()
REPEAT = 15.0  # seconds of the sample repeated at its end


def pyannote_sample() -> tuple[Path, Path]:
    """(sample.wav, sample.rttm), fetched once."""
    paths = {name: CACHE / name for name in SHA256}
    if not all(p.exists() for p in paths.values()):
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--disable-pip-version-check", "--dest", tmp, WHEEL], check=True, timeout=300)
            wheel = next(Path(tmp).glob("pyannote_audio-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for name, target in paths.items():
                    target.write_bytes(archive.read(f"pyannote/audio/sample/{name}"))
    for name, target in paths.items():
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != SHA256[name]:
            target.unlink()
            raise RuntimeError(f"{target}: SHA-256 {digest}, expected {SHA256[name]}")
    return paths["sample.wav"], paths["sample.rttm"]


def samples_of(path: Path) -> Any:
    """16 kHz mono float32 samples of any audio file (ffmpeg)."""
    import imageio_ffmpeg
    import numpy as np

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-ac", "1", "-ar",
                          str(RATE), "-f", "s16le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0


def reference_turns(rttm: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in rttm.read_text().splitlines():
        fields = line.split()
        start, length = float(fields[3]), float(fields[4])
        turns.append((start, start + length, fields[7]))
    return turns


def two_speakers() -> tuple[Any, list[tuple[float, float, str]]]:
    wav, rttm = pyannote_sample()
    return samples_of(wav), reference_turns(rttm)


def three_speakers() -> tuple[Any, list[tuple[float, float, str]]]:
    import numpy as np

    from audiojobs.transcription.faster_whisper_backend import speech_spans

    sample, turns = two_speakers()
    jfk = samples_of(JFK_FLAC)
    gap = np.zeros(int(GAP * RATE), dtype=np.float32)
    audio = np.concatenate([sample, gap, jfk, gap, sample[:int(REPEAT * RATE)]])
    jfk_at = len(sample) / RATE + GAP
    again_at = jfk_at + len(jfk) / RATE + GAP
    reference = list(turns)
    reference += [(jfk_at + a / RATE, jfk_at + b / RATE, "jfk") for a, b in speech_spans(jfk)]
    reference += [(again_at + s, again_at + min(e, REPEAT), who) for s, e, who in turns if s < REPEAT]
    return audio, reference


def two_channels() -> tuple[Any, float]:
    """A call: jfk.flac on channel 0, then silence; silence, then one of the sample's speakers alone
    (21.8-27.8 s of it) on channel 1, from ``CALL_SWITCH`` seconds. (samples (n, 2), CALL_SWITCH)."""
    import numpy as np

    sample, _turns = two_speakers()
    jfk = samples_of(JFK_FLAC)
    other = sample[int(21.8 * RATE):int(27.8 * RATE)]
    switch = len(jfk) / RATE + GAP
    left = np.concatenate([jfk, np.zeros(int(GAP * RATE) + len(other), dtype=np.float32)])
    right = np.concatenate([np.zeros(len(jfk) + int(GAP * RATE), dtype=np.float32), other])
    return np.stack([left, right], axis=1), switch


def write_wav(samples: Any, path: Path) -> Path:
    """16-bit PCM at 16 kHz; ``samples`` (n,) mono or (n, channels)."""
    import numpy as np

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def der(reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]],
        seconds: float) -> float:
    """Diarization error rate, collar 0.25 s, overlapped speech scored (pyannote.metrics)."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: list[tuple[float, float, str]]) -> Annotation:
        made = Annotation()
        for start, end, who in turns:
            made[Segment(start, end)] = who
        return made

    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    return float(metric(annotation(reference), annotation(hypothesis), uem=Timeline([Segment(0, seconds)])))
