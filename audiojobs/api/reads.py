"""One read-only database session per request, shared by authentication and the view: a status read
checks out one pooled connection (one liveness ping) instead of one per step. Closed when the
request ends, whatever happened."""

from __future__ import annotations

from flask import g
from sqlalchemy.orm import Session

from audiojobs.db import read_session


def reader(url: str) -> Session:
    session: Session | None = g.get("_reader")
    if session is None:
        session = g._reader = read_session(url)
    return session


def close_reader(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("_reader", None)
    if session is not None:
        session.close()
