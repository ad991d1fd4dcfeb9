from __future__ import annotations

import pytest

from audiojobs.jobs.states import FINAL_STATUSES, PIPELINE, TRANSITIONS, InvalidTransition, JobStatus, check_transition


def test_final_statuses_go_nowhere() -> None:
    for status in FINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
        for other in JobStatus:
            with pytest.raises(InvalidTransition):
                check_transition(status, other)


def test_queued_cannot_complete_without_processing() -> None:
    with pytest.raises(InvalidTransition):
        check_transition(JobStatus.QUEUED, JobStatus.COMPLETED)
    check_transition(JobStatus.QUEUED, JobStatus.PROCESSING)
    check_transition(JobStatus.PROCESSING, JobStatus.COMPLETED)


def test_pipeline_order() -> None:
    assert [s.value for s in PIPELINE] == ["audio_download", "audio_convert", "audio_transcribe", "audio_chunk",
                                          "audio_analyze", "audio_store"]
