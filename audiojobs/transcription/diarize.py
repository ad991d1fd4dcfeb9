"""Who spoke when, offline: speaker turns of a 16 kHz mono recording.

1. **Voice activity**: Silero VAD, as faster-whisper ships it (the VAD transcription uses).
2. **Embeddings**: resemblyzer's pretrained voice encoder (a 3-layer LSTM, d-vectors of 256; the
   weights ship inside the wheel, Apache-2.0, and load without a network), over windows of
   ``WINDOW`` seconds every ``HOP`` seconds inside the speech: with torch on CUDA when there is
   one, else on onnxruntime from an ONNX export of it made once per model directory
   (encoder_export.py), so CPU workers never load torch.
3. **Clustering**: SciPy's agglomerative clustering (Ward's, on the unit-length embeddings);
   the number of speakers is the one asked for, else estimated between the bounds from the
   eigengap of the windows' pruned cosine-affinity graph (SciPy), with the lower bound under
   about 16 s of speech.
4. **Turns**: each 0.1 s of speech takes the speaker most of its windows were given; neighbours with
   the same speaker merge. Speakers are named ``A``, ``B`` … in order of first appearance.
"""

from __future__ import annotations

import string
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from audiojobs.errors import DiarizationUnavailable
from audiojobs.text import spread_words
from audiojobs.transcription.interfaces import Segment, Word
from audiojobs.transcription.wav import SAMPLE_RATE

# The encoder's own hyperparameters (resemblyzer.hparams; a test checks they still match).
MEL_WINDOW_MS, MEL_STEP_MS, MEL_BANDS, LEVEL_DBFS = 25, 10, 40, -30
WINDOW = 1.6  # seconds of audio per embedding (resemblyzer's partial utterance)
HOP = 0.8  # seconds between embedding windows
STEP = 0.1  # the resolution of the turns
MEL_HOP = 0.01  # resemblyzer's mel frames are 10 ms apart
PRUNE = 0.3  # the share of its nearest windows each window keeps in the affinity graph
MIN_WINDOWS = 20  # fewer windows (about 16 s of speech) are too few to count speakers by
BATCH = 64  # windows per forward pass of the encoder


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str

    def to_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "start": round(self.start, 3), "end": round(self.end, 3)}


def label(index: int) -> str:
    """A, B, … Z, then S27, S28 … (20 speakers at most are asked for)."""
    return string.ascii_uppercase[index] if index < 26 else f"S{index + 1}"


def onnx_path(model_dir: Path) -> Path:
    from importlib.metadata import version

    return model_dir / f"resemblyzer-{version('resemblyzer')}-voice-encoder.onnx"


Embed = Callable[[Any], Any]  # (windows, 160, 40) mel frames -> (windows, 256) unit voice prints


def embedder(model_dir: Path) -> Embed:
    """The voice encoder: on CUDA with torch when the machine has a GPU; else on onnxruntime (which
    faster-whisper loads anyway), from the ONNX file made once per model directory, so a CPU worker
    never holds torch (about 200 MB)."""
    from audiojobs.transcription.faster_whisper_backend import cuda_available

    if cuda_available():
        return _torch_encoder("cuda")
    return _onnx_encoder(str(onnx_path(model_dir)))


@lru_cache(maxsize=1)
def _torch_encoder(device: str) -> Embed:
    import torch

    with warnings.catch_warnings():  # what resemblyzer imports warns: scipy.ndimage.morphology, pkg_resources
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

        model = VoiceEncoder(device, verbose=False)

    def embed(batch: Any) -> Any:
        with torch.no_grad():
            return model(torch.from_numpy(batch).to(device)).cpu().numpy()

    return embed


@lru_cache(maxsize=2)
def _onnx_encoder(path: str) -> Embed:
    import onnxruntime

    target = Path(path)
    if not target.exists():
        made = subprocess.run([sys.executable, "-m", "audiojobs.transcription.encoder_export", path],
                              capture_output=True, text=True, timeout=600)
        if made.returncode != 0 or not target.exists():
            raise DiarizationUnavailable(f"the voice encoder could not be prepared: {made.stderr.strip()[-300:]}")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False  # the arena would keep the largest batch's activations for good
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"mels": batch})[0]


def mel(samples: Any) -> Any:
    """The mel spectrogram the voice encoder was trained on (resemblyzer's ``wav_to_mel_spectrogram``:
    librosa's, 40 bands, 25-ms windows every 10 ms), from faster-whisper's filter bank and STFT,
    which give the same numbers: librosa would cost each worker about 200 MB more (numba, LLVM).
    (frames, 40) float32."""
    import numpy as np
    from faster_whisper.feature_extractor import FeatureExtractor

    n_fft = SAMPLE_RATE * MEL_WINDOW_MS // 1000
    hop = SAMPLE_RATE * MEL_STEP_MS // 1000
    spectrum = FeatureExtractor.stft(samples.astype(np.float32), n_fft, hop, window=_hann(n_fft), center=True,
                                     mode="constant", return_complex=True)
    return (_filters(SAMPLE_RATE, n_fft, MEL_BANDS) @ (np.abs(spectrum) ** 2)).astype(np.float32).T


def at_level(samples: Any) -> Any:
    """The recording raised (never lowered) to the encoder's training level, -30 dBFS: resemblyzer's
    ``normalize_volume(wav, -30, increase_only=True)``, here so that resemblyzer (and torch with it)
    need not be imported."""
    import numpy as np

    power = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    if power <= 0.0:
        return samples
    change = LEVEL_DBFS - 10 * np.log10(power)
    return samples if change < 0 else samples * np.float32(10 ** (change / 20))


@lru_cache(maxsize=2)
def _hann(size: int) -> Any:
    import numpy as np

    return np.hanning(size + 1)[:-1].astype(np.float32)  # periodic, as librosa's "hann"


@lru_cache(maxsize=2)
def _filters(rate: int, n_fft: int, bands: int) -> Any:
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(rate, n_fft, n_mels=bands)


def embed_windows(samples: Any, spans: list[tuple[int, int]], embed: Embed,
                  progress: Callable[[float], None] | None = None) -> tuple[Any, list[tuple[float, float]]]:
    """The embeddings of windows inside the speech ``spans`` (samples), with their (start, end) s.
    ``progress`` hears the share done before each batch (it may raise to stop)."""
    import numpy as np

    frames = int(round(WINDOW / MEL_HOP))
    hop = int(round(HOP / MEL_HOP))
    # The encoder was trained on speech at -30 dBFS (resemblyzer's preprocess_wav; its silence
    # trimming is left out, as it would shift the times).
    audio = at_level(samples)
    per_frame = int(round(SAMPLE_RATE * MEL_HOP))
    total = len(audio) // per_frame  # mel frames in the whole recording
    windows: list[tuple[int, int]] = []
    for begin, end in spans:
        first, last = begin // per_frame, end // per_frame
        if last - first <= frames:  # a short region: one window around it
            middle = (first + last) // 2
            start = max(0, min(middle - frames // 2, total - frames))
            windows.append((start, start + frames))
            continue
        starts = list(range(first, last - frames + 1, hop))
        if starts[-1] + frames < last:
            starts.append(last - frames)
        windows += [(s, s + frames) for s in starts]
    windows = [(s, e) for s, e in windows if s >= 0 and e <= total]
    if not windows:
        return np.zeros((0, 256), dtype=np.float32), []
    out = []
    for at in range(0, len(windows), BATCH):
        if progress is not None:
            progress(at / len(windows))
        out.append(embed(np.stack([mel(audio[s * per_frame:e * per_frame])[:frames]
                                   for s, e in windows[at:at + BATCH]])))
    return np.concatenate(out), [(s * MEL_HOP, e * MEL_HOP) for s, e in windows]


def estimate_count(embeddings: Any, low: int, high: int) -> int:
    """How many speakers, between ``low`` and ``high``: the largest eigengap of the normalised
    Laplacian of the windows' cosine affinities, each window keeping only its nearest PRUNE share
    of neighbours (spectral clustering's usual estimate). Under MIN_WINDOWS windows there is too
    little to tell voices apart: ``low``."""
    import numpy as np
    from scipy.sparse.csgraph import laplacian

    count = len(embeddings)
    high = min(high, count)
    if count < MIN_WINDOWS or high <= low:
        return max(1, min(low, count))
    affinity = np.clip(embeddings @ embeddings.T, 0.0, 1.0)
    keep = max(2, int(count * PRUNE))
    threshold = np.sort(affinity, axis=1)[:, -keep][:, None]
    affinity = np.where(affinity >= threshold, affinity, 0.0)
    affinity = np.maximum(affinity, affinity.T)
    values = np.sort(np.linalg.eigvalsh(laplacian(affinity, normed=True)))
    gaps = np.diff(values[:high + 1])  # gaps[k - 1]: between the k-th and the (k+1)-th eigenvalue
    return max(low, min(high, int(np.argmax(gaps[low - 1:high]) + low)))


def cluster(embeddings: Any, speakers: int | None, min_speakers: int, max_speakers: int) -> list[int]:
    """A speaker index per embedding: Ward's agglomerative clustering (SciPy's hierarchy) cut into
    the asked or estimated count."""
    from scipy.cluster.hierarchy import fcluster, linkage

    count = len(embeddings)
    if count == 0:
        return []
    k = min(speakers, count) if speakers is not None else estimate_count(embeddings, min_speakers, max_speakers)
    if k <= 1:
        return [0] * count
    return [int(x) - 1 for x in fcluster(linkage(embeddings, method="ward"), t=k, criterion="maxclust")]


def turns_of(windows: list[tuple[float, float]], labels: list[int], spans: list[tuple[int, int]]) -> list[Turn]:
    """Speaker turns: each STEP of speech to the speaker whose windows over it weigh most (a window
    counts the more the nearer its centre), then neighbours of one speaker merged."""
    import numpy as np

    if not windows:
        return []
    bounds = np.array(windows)
    centres = bounds.mean(axis=1)
    onehot = np.eye(max(labels) + 1)[labels]  # (windows, speakers)
    names: dict[int, str] = {}
    turns: list[Turn] = []
    for begin, end in spans:
        edges = np.append(np.arange(begin / SAMPLE_RATE, end / SAMPLE_RATE, STEP), end / SAMPLE_RATE)
        middles = (edges[:-1] + edges[1:]) / 2
        inside = (bounds[:, 0][None, :] <= middles[:, None]) & (middles[:, None] <= bounds[:, 1][None, :])
        weight = np.where(inside, 1.0 - np.abs(middles[:, None] - centres[None, :]) / WINDOW, 0.0)
        nearest = np.abs(middles[:, None] - centres[None, :]).argmin(axis=1)
        lonely = ~inside.any(axis=1)  # outside every window: the nearest window's speaker
        weight[lonely, nearest[lonely]] = 1.0
        chosen = (weight @ onehot).argmax(axis=1)
        for start, stop, speaker in zip(edges[:-1], edges[1:], chosen, strict=True):
            name = names.setdefault(int(speaker), label(len(names)))
            if turns and turns[-1].speaker == name and start - turns[-1].end < 0.5:
                turns[-1] = Turn(turns[-1].start, float(stop), name)
            else:
                turns.append(Turn(float(start), float(stop), name))
    return turns


def available() -> bool:
    """The diarization packages are installed (``pip install audiojobs[diarize]``)."""
    import importlib.util

    names = ("resemblyzer", "scipy", "torch", "onnx", "onnxruntime")
    return all(importlib.util.find_spec(name) is not None for name in names)


def diarize(samples: Any, model_dir: Path, *, speakers: int | None = None, min_speakers: int = 1,
            max_speakers: int = 8, progress: Callable[[float], None] | None = None) -> list[Turn]:
    """Speaker turns of 16 kHz mono float32 ``samples``. ``model_dir`` keeps the encoder's ONNX file
    (AUDIO_MODEL_DIR). ``progress`` hears the share done between batches (it may raise to stop,
    e.g. when the job is cancelled)."""
    from audiojobs.transcription.faster_whisper_backend import speech_spans

    spans = speech_spans(samples)
    embeddings, windows = embed_windows(samples, spans, embedder(model_dir), progress)
    return turns_of(windows, cluster(embeddings, speakers, min_speakers, max_speakers), spans)


def _speaker_at(start: float, end: float, turns: list[Turn]) -> str:
    """The speaker of most of [start, end]; the nearest turn's when no turn overlaps it."""
    best, overlap = turns[0].speaker, 0.0
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > overlap:
            best, overlap = turn.speaker, shared
    if overlap > 0:
        return best
    middle = (start + end) / 2
    return min(turns, key=lambda t: 0.0 if t.start <= middle <= t.end else min(abs(middle - t.start),
                                                                                abs(middle - t.end))).speaker


def label_segments(segments: list[Segment], turns: list[Turn]) -> list[Segment]:
    """Every segment and word with its speaker; a segment whose words change speaker is split at
    each change (its decoder measures go to every part). Without word timestamps each word is
    timed by its characters' share of the segment (``text.spread_words``), and the parts have no
    words."""
    if not turns:
        return segments
    out: list[Segment] = []
    for seg in segments:
        timed = seg.words or [Word(start, end, f" {word}") for word, start, end in
                              spread_words(seg.text, seg.start, seg.end)]
        if not timed:
            out.append(replace(seg, speaker=_speaker_at(seg.start, seg.end, turns)))
            continue
        words = [replace(w, speaker=_speaker_at(w.start, w.end, turns)) for w in timed]
        runs: list[list[Word]] = []
        for word in words:
            if runs and runs[-1][-1].speaker == word.speaker:
                runs[-1].append(word)
            else:
                runs.append([word])
        for index, run in enumerate(runs):
            start = seg.start if index == 0 else run[0].start
            end = seg.end if index == len(runs) - 1 else run[-1].end
            text = "".join(w.word for w in run)
            out.append(replace(seg, start=start, end=end, text=text if len(runs) > 1 else seg.text,
                               speaker=run[0].speaker, words=run if seg.words else None,
                               tokens=seg.tokens if len(runs) == 1 else None))
    return out
