"""An analysis's status moves only as its table allows."""

from __future__ import annotations

import pytest

from audiojobs.analysis.states import AnalysisStatus, moved


def test_an_analysis_is_rerun_from_any_end_and_ends_once_per_run() -> None:
    for end in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED):
        assert moved(end.value, AnalysisStatus.PENDING) == "pending"
        assert moved("pending", end) == end.value
    with pytest.raises(ValueError, match="completed cannot become failed"):
        moved("completed", AnalysisStatus.FAILED)
