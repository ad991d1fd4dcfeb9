"""Speaker diarization end to end: real speech of three people through the HTTP API, a real worker
and the real model; every format that shows speakers; the OpenAI client's diarized_json."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import AUTH, wait_for_job
from tests.integration.conftest import Stack
from tests.services import JFK_FLAC
from tests.speakers import GAP, RATE, three_speakers, two_channels, two_speakers, write_wav

pytestmark = pytest.mark.integration
JOBS = "/api/v1/audio/jobs"


def test_three_people_are_three_speakers_in_every_format(stack: Stack) -> None:
    audio, _reference = three_speakers()
    path = write_wav(audio, stack.media_root / "three-speakers.wav")
    resp = stack.client.post(f"{JOBS}/submit", json={"local_path": str(path), "diarize": True, "language": "en",
                                                     "word_timestamps": True}, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    job_id = resp.get_json()["id"]
    job = wait_for_job(stack.client, job_id, timeout=180)
    assert job["status"] == "completed", job
    assert job["payload"]["diarize"] is True
    result = stack.client.get(f"{JOBS}/{job_id}/result", headers=AUTH).get_json()
    assert [s["label"] for s in result["speakers"]] == ["A", "B", "C"]
    assert result["transcript"]["speakers"] == result["speakers"]
    assert all(s["total_seconds"] > 2 for s in result["speakers"])
    segments = result["segments"]
    assert all(seg["speaker"] in "ABC" for seg in segments)
    assert all(word["speaker"] == seg["speaker"] for seg in segments for word in seg["words"])  # never mixed
    # JFK (from 31 s to 42 s) is one speaker of his own: nobody else's words are his label's.
    jfk_at = 30.0 + GAP
    his = [w for seg in segments for w in seg["words"] if jfk_at + 0.5 < w["start"] < jfk_at + 10.5]
    labels = {w["speaker"] for w in his}
    assert len(labels) == 1 and "country" in " ".join(w["word"] for w in his)
    others = {w["speaker"] for seg in segments for w in seg["words"]
              if w["end"] < jfk_at - 0.5 or w["start"] > jfk_at + 11.5}
    assert labels.isdisjoint(others) and len(others) == 2

    def fetch(fmt: str) -> str:
        got = stack.client.get(f"{JOBS}/{job_id}/result?format={fmt}", headers=AUTH)
        assert got.status_code == 200, (fmt, got.get_data(as_text=True))
        return got.get_data(as_text=True)

    lines = fetch("text").splitlines()
    assert lines and all(line[:3] in {"A: ", "B: ", "C: "} for line in lines)
    assert all(a[0] != b[0] for a, b in zip(lines, lines[1:], strict=False))  # one line per turn
    assert "[A] " in fetch("srt") and "<v B>" in fetch("vtt")
    diarized = stack.client.get(f"{JOBS}/{job_id}/result?format=diarized_json", headers=AUTH).get_json()
    assert {s["speaker"] for s in diarized["segments"]} == {"A", "B", "C"}
    assert diarized["segments"][0]["type"] == "transcript.text.segment"
    verbose = stack.client.get(f"{JOBS}/{job_id}/result?format=verbose_json", headers=AUTH).get_json()
    assert all("speaker" in s for s in verbose["segments"]) and all("speaker" in w for w in verbose["words"])
    print(f"\nspeakers: {result['speakers']}; {len(segments)} segments, {len(lines)} turns")


def test_a_job_without_diarize_has_no_speakers(stack: Stack) -> None:
    resp = stack.client.post(f"{JOBS}/submit", json={"local_path": str(stack.media_root / "jfk.flac")},
                             headers=AUTH)
    job_id = resp.get_json()["id"]
    assert wait_for_job(stack.client, job_id)["status"] == "completed"
    result = stack.client.get(f"{JOBS}/{job_id}/result", headers=AUTH).get_json()
    assert result["speakers"] is None and all("speaker" not in s for s in result["segments"])
    refused = stack.client.get(f"{JOBS}/{job_id}/result?format=diarized_json", headers=AUTH)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_diarized"
    assert not stack.client.get(f"{JOBS}/{job_id}/result?format=text", headers=AUTH).get_data(
        as_text=True).startswith("A: ")


def test_the_openai_client_gets_diarized_json_and_the_cli_prints_turns(stack: Stack) -> None:
    import subprocess
    import sys

    import openai
    from werkzeug.serving import make_server

    from audiojobs.api.app import create_app
    from tests.conftest import API_KEY

    audio, _reference = two_speakers()
    path = write_wav(audio, stack.media_root / "two-speakers.wav")
    server = make_server("127.0.0.1", 0, create_app(stack.settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/api/v1", api_key=API_KEY, max_retries=0)
    try:
        with open(path, "rb") as media:
            diarized = client.audio.transcriptions.create(model="whisper-1", file=media,
                                                          response_format="diarized_json")
        with open(JFK_FLAC, "rb") as media:
            alone = client.audio.transcriptions.create(model="whisper-1", file=media, response_format="diarized_json")
        env = {**stack.env, "AUDIOJOBS_SERVER": f"http://127.0.0.1:{server.server_port}", "AUDIOJOBS_API_KEY": API_KEY}
        cli = subprocess.run([sys.executable, "-m", "audiojobs.cli", "submit", str(path), "--diarize", "--speakers",
                              "2", "--wait"], env=env, cwd=stack.tmp, capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
    assert cli.returncode == 0, cli.stderr
    turns = cli.stdout.splitlines()
    print(f"\n$ audiojobs submit two-speakers.wav --diarize --speakers 2 --wait\n{cli.stdout}")
    assert len(turns) >= 3 and {line[:3] for line in turns} == {"A: ", "B: "}
    assert diarized.task == "transcribe" and abs(diarized.duration - len(audio) / RATE) < 0.2
    assert {s.speaker for s in diarized.segments} == {"A", "B"} and diarized.text
    assert {s.speaker for s in alone.segments} == {"A"} and "country" in alone.text


def test_each_channel_of_a_call_is_one_speaker(stack: Stack) -> None:
    audio, switch = two_channels()
    path = write_wav(audio, stack.media_root / "call.wav")
    resp = stack.client.post(f"{JOBS}/submit", json={"local_path": str(path), "multichannel": True,
                                                     "word_timestamps": True, "language": "en"}, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    job = wait_for_job(stack.client, resp.get_json()["id"], timeout=180)
    assert job["status"] == "completed", job
    result = stack.client.get(f"{JOBS}/{job['id']}/result", headers=AUTH).get_json()
    assert [s["label"] for s in result["speakers"]] == ["channel_0", "channel_1"]
    words = [w for seg in result["segments"] for w in seg["words"]]
    assert all(w["speaker"] == seg["speaker"] for seg in result["segments"] for w in seg["words"])
    first = [w for w in words if w["speaker"] == "channel_0"]
    second = [w for w in words if w["speaker"] == "channel_1"]
    assert "country" in " ".join(w["word"] for w in first) and all(w["end"] < switch for w in first)
    assert second and all(w["start"] > switch - 0.5 for w in second)  # every word on its channel's speaker
    starts = [seg["start"] for seg in result["segments"]]
    assert starts == sorted(starts)
    text = stack.client.get(f"{JOBS}/{job['id']}/result?format=text", headers=AUTH).get_data(as_text=True)
    assert text.startswith("channel_0: ") and "\nchannel_1: " in text
