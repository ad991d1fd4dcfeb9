"""``python -m audiojobs.transcription.encoder_export TARGET``: resemblyzer's pretrained voice encoder
(the weights in its wheel) written as an ONNX model, so that CPU workers run it on onnxruntime (which
faster-whisper already loads for its VAD) without torch in their process. Run once per model
directory, in a process of its own (diarize.py starts it when the file is missing), since it needs
torch and the ``onnx`` package; the file appears whole (written aside, then renamed).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

FRAMES = 160  # the encoder's windows: 1.6 s of 10-ms mel frames
BANDS = 40


def export(target: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

        model = VoiceEncoder("cpu", verbose=False).eval()
        aside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        torch.onnx.export(model, (torch.zeros(2, FRAMES, BANDS),), str(aside), input_names=["mels"],
                          output_names=["embeds"], dynamic_axes={"mels": {0: "batch"}, "embeds": {0: "batch"}},
                          dynamo=False, opset_version=17)
    aside.replace(target)


if __name__ == "__main__":
    destination = Path(sys.argv[1])
    destination.parent.mkdir(parents=True, exist_ok=True)
    export(destination)
