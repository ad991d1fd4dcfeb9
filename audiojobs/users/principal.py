"""Who is calling: what authentication establishes and every use case is given."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user id and whether they are an admin; their tier name when it was read
    with them (authentication reads it in the same query), so a submit need not look it up again."""

    user_id: str
    is_admin: bool
    tier: str | None = None
