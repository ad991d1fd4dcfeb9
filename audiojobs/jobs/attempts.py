"""What a stage attempt carries and what the job service decides about a message: the values the
runner, the stage context and the recovery passes exchange with :mod:`audiojobs.jobs.service`."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from audiojobs.jobs.states import Stage


class Decision(enum.Enum):
    START = "start"  # run the stage now
    SKIP_DONE = "skip_done"  # the stage already succeeded: let the chain go on
    WAIT = "wait"  # the job's current dispatch, but another attempt holds a live lease: come back later
    IGNORE = "ignore"  # not ours to run (stale message, final job, another stage's message)


@dataclass(frozen=True)
class Attempt:
    """One running attempt of one stage: what its writes must name."""

    job_id: int
    stage: Stage
    run_id: int
    attempt: int
    fence: int
    dispatch: int
    payload: dict[str, Any]
    started_at: dt.datetime  # its run's (closing the run then needs no read of it)
    owner_user_id: str = ""
    job_uuid: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # the job's current objects when it began


@dataclass(frozen=True)
class StageDecision:
    decision: Decision
    reason: str
    attempt: Attempt | None = None
    job_status: str | None = None
    retry_in: float | None = None  # WAIT: seconds until the message should be delivered again
    job_uuid: str | None = None  # IGNORE of a final job: whose files may go


@dataclass(frozen=True)
class Dispatch:
    """A message to publish: the job's stages from ``stage`` on, under token ``dispatch``. The job's
    ``priority`` and ``admitted_at`` say at which level it is sent (jobs/priority.py); they are not
    part of what a dispatch is."""

    job_id: int
    dispatch: int
    stage: Stage
    priority: int = field(default=0, compare=False)
    admitted_at: dt.datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StageEnd:
    """What ``finish_stage`` did. ``moved_on``: the job is at its next stage and the attempt's chain
    sends it. ``redispatch``: the job was re-dispatched while the attempt ran, so the chain's next
    message would be stale: publish this instead (it is also due in the outbox)."""

    moved_on: bool
    redispatch: Dispatch | None = None
    following: Dispatch | None = None  # moved on: the stage the chain sends next (for its priority)


# A message that meets a live lease comes back after at most this long (or when the lease ends).
