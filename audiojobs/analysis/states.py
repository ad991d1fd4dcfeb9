"""An analysis's statuses and the transitions allowed between them: one table, checked on every move.

The pipeline's ``audio_analyze`` stores an analysis ``completed`` (its failure fails the job
instead). ``POST /jobs/{id}/analyze`` makes it ``pending`` again; the re-run ends it ``completed``
or ``failed``; either may be analysed again.
"""

from __future__ import annotations

import enum


class AnalysisStatus(str, enum.Enum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


TRANSITIONS: dict[AnalysisStatus, frozenset[AnalysisStatus]] = {
    AnalysisStatus.PENDING: frozenset({AnalysisStatus.PENDING, AnalysisStatus.COMPLETED, AnalysisStatus.FAILED}),
    AnalysisStatus.COMPLETED: frozenset({AnalysisStatus.PENDING}),
    AnalysisStatus.FAILED: frozenset({AnalysisStatus.PENDING}),
}


def moved(current: str, wanted: AnalysisStatus) -> str:
    """``wanted``'s stored value when ``current`` may become it; ValueError otherwise."""
    if wanted not in TRANSITIONS[AnalysisStatus(current)]:
        raise ValueError(f"an analysis that is {current} cannot become {wanted.value}")
    return wanted.value
