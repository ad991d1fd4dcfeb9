"""A user's tier and its limits, in either auth mode."""

from __future__ import annotations

from sqlalchemy.orm import Session

from audiojobs.config import Settings
from audiojobs.quotas.tiers import TierLimits, tier_table
from audiojobs.users import service as users


def known_tiers(settings: Settings) -> dict[str, TierLimits]:
    return tier_table(settings.tier_limits_json)


def tier_of(session: Session, settings: Settings, user_id: str) -> str | None:
    """The tier name of ``user_id``; None for a user that does not exist."""
    if settings.auth_mode == "single_user":
        return settings.single_user_tier if user_id == settings.single_user_id else None
    user = users.get_user(session, user_id)
    return user.tier if user is not None else None


def limits_for(session: Session, settings: Settings, user_id: str, tier: str | None = None) -> TierLimits:
    """The limits that apply to ``user_id`` (a tier removed from the config falls back to the default
    tier). ``tier``: the user's tier name when the caller read it already."""
    tiers = known_tiers(settings)
    name = tier if tier is not None else tier_of(session, settings, user_id)
    return tiers.get(name or settings.default_tier) or tiers[settings.default_tier]
