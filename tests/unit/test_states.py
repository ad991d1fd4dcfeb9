"""Analysis and webhook delivery statuses move only as their tables allow."""

from __future__ import annotations

import pytest

from audiojobs.analysis.states import AnalysisStatus
from audiojobs.analysis.states import moved as analysis_moved
from audiojobs.webhooks.states import DeliveryStatus
from audiojobs.webhooks.states import moved as delivery_moved


def test_an_analysis_is_rerun_from_any_end_and_ends_once_per_run() -> None:
    for end in (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED):
        assert analysis_moved(end.value, AnalysisStatus.PENDING) == "pending"
        assert analysis_moved("pending", end) == end.value
    with pytest.raises(ValueError, match="completed cannot become failed"):
        analysis_moved("completed", AnalysisStatus.FAILED)


def test_an_ended_delivery_never_moves() -> None:
    assert delivery_moved("pending", DeliveryStatus.DELIVERED) == "delivered"
    assert delivery_moved("pending", DeliveryStatus.FAILED) == "failed"
    for end in ("delivered", "failed"):
        for wanted in DeliveryStatus:
            with pytest.raises(ValueError):
                delivery_moved(end, wanted)
