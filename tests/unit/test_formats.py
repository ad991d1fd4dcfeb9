"""Transcript formats: verbose_json in OpenAI's shape; srt and vtt cues within width, lines and time."""

from __future__ import annotations

import re

from audiojobs import formats
from audiojobs.formats import SubtitleStyle

SEGMENTS = [
    {"id": 0, "start": 0.0, "end": 3.2, "text": " And so my fellow Americans,", "avg_logprob": -0.2},
    {"id": 1, "start": 3.2, "end": 11.0,
     "text": " ask not what your country can do for you, ask what you can do for your country."},
]
TRANSCRIPT = {"text": "And so my fellow Americans, ask not what your country can do for you, ask what you can do "
                      "for your country.", "segments": SEGMENTS, "language": "en", "duration": 11.0}
STAMP = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = map(int, match)
    return h * 3600 + m * 60 + s + ms / 1000


def test_srt_cues_respect_width_lines_and_duration() -> None:
    style = SubtitleStyle(max_line_chars=20, max_lines=2, max_seconds=3)
    text = formats.srt(SEGMENTS, style)
    blocks = text.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    previous_end = 0.0
    for block in blocks:
        _index, timing, *lines = block.split("\n")
        start, end = (_seconds(m) for m in re.findall(STAMP, timing))
        assert " --> " in timing and "," in timing
        assert previous_end - 1e-3 <= start <= end and end - start <= 3 + 1e-3, block
        assert 1 <= len(lines) <= 2 and all(len(line) <= 20 for line in lines), block
        previous_end = end
    words = " ".join(" ".join(b.split("\n")[2:]) for b in blocks).split()
    assert words == TRANSCRIPT["text"].split()  # every word once, in order
    assert _seconds(re.findall(STAMP, blocks[-1])[1]) == 11.0


def test_vtt_has_its_header_and_dot_milliseconds() -> None:
    text = formats.vtt(SEGMENTS)
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert "," not in text.split("\n")[2]


def test_word_timestamps_time_the_cues() -> None:
    words = [{"word": " ask", "start": 3.5, "end": 3.9}, {"word": " not", "start": 4.0, "end": 4.4}]
    segment = {"id": 0, "start": 3.2, "end": 5.0, "text": " ask not", "words": words}
    assert formats.cues([segment])[0].start == 3.5 and formats.cues([segment])[0].end == 4.4


def test_verbose_json_is_openais_shape() -> None:
    body = formats.verbose_json(TRANSCRIPT)
    assert body["task"] == "transcribe" and body["language"] == "english" and body["duration"] == 11.0
    assert body["text"] == TRANSCRIPT["text"] and body["segments"][0]["avg_logprob"] == -0.2
    assert "words" not in body
    with_words = formats.verbose_json({**TRANSCRIPT, "segments": [
        {**SEGMENTS[0], "words": [{"word": " And", "start": 0.0, "end": 0.3, "probability": 0.9}]}]})
    assert with_words["words"] == [{"word": " And", "start": 0.0, "end": 0.3}]
    assert "words" not in with_words["segments"][0]


def test_text_and_empty_transcripts() -> None:
    assert formats.text(TRANSCRIPT).endswith("country.\n")
    assert formats.srt([]) == "" and formats.vtt([]) == "WEBVTT\n\n"
