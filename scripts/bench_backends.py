"""Both transcription backends on the same audio, side by side in one run: the real-time factor of
faster-whisper and of openai-whisper (same tiny.en weights: the bundled CTranslate2 model, and a
checkpoint converted from it by ../shared/models/ct2_whisper_to_openai.py, cached in .cache/models).

Usage: scripts/bench --backends [--minutes 5] [--rounds 2]
Writes var/bench/backends.json. The clip is jfk.flac looped to the length asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.pipeline.convert import ffmpeg_binary, to_wav
from audiojobs.transcription.interfaces import TranscribeOptions
from audiojobs.transcription.registry import bundled_model_path, get_backend

REPO = Path(__file__).resolve().parent.parent
JFK = REPO.parent / "shared" / "fixtures" / "audio" / "jfk.flac"
CONVERTER = REPO.parent / "shared" / "models" / "ct2_whisper_to_openai.py"
MODEL_DIR = REPO / ".cache" / "models"


def ensure_checkpoint() -> Path:
    target = MODEL_DIR / "tiny.en.pt"
    if not target.is_file():
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        source = bundled_model_path("tiny.en")
        subprocess.run([sys.executable, str(CONVERTER), str(source), str(target)], check=True, capture_output=True)
    return MODEL_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per backend")
    args = parser.parse_args()
    settings = Settings.from_env({"AUDIO_MODEL_DIR": str(ensure_checkpoint())})
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.flac"
        loops = max(1, round(args.minutes * 60 / 11.0))
        subprocess.run([ffmpeg_binary(settings), "-nostdin", "-loglevel", "error", "-stream_loop", str(loops - 1),
                        "-i", str(JFK), "-c:a", "flac", str(clip)], check=True)
        wav = Path(tmp) / "clip.wav"
        duration = to_wav(clip, wav, settings)
        short = Path(tmp) / "jfk.wav"
        to_wav(JFK, short, settings)
        backends = {name: get_backend(f"{name}:tiny.en", settings) for name in ("faster-whisper", "openai-whisper")}
        for backend in backends.values():
            backend.transcribe(str(short))  # warm-up
        times: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.rounds):  # alternate, so drift in machine load hits both alike
            for name, backend in backends.items():
                started = time.perf_counter()
                backend.transcribe(str(wav), options=TranscribeOptions(language="en"))
                times[name].append(time.perf_counter() - started)
    best = {name: min(t) for name, t in times.items()}
    rtf = {name: best[name] / duration for name in best}
    per_backend = {name: {"compute_type": backends[name].compute_type, "device": backends[name].device,
                          "seconds": [round(t, 2) for t in times[name]], "real_time_factor": round(rtf[name], 4)}
                   for name in backends}
    result = {"audio_seconds": round(duration, 1), "rounds": args.rounds,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "backends": per_backend, "openai_over_faster": round(best["openai-whisper"] / best["faster-whisper"], 2)}
    print(f"{'backend':<16} {'device':<6} {'compute':<8} {'best s':>8} {'RTF':>7}   ({duration:.0f} s of audio)")
    for name, data in per_backend.items():
        print(f"{name:<16} {data['device']:<6} {data['compute_type']:<8} {best[name]:>8.2f} "
              f"{data['real_time_factor']:>7.4f}")
    print(f"faster-whisper is {result['openai_over_faster']}x faster than openai-whisper on the same weights")
    out = REPO / "var" / "bench" / "backends.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
