"""Tiers: what a user may use. Defaults below; ``AUDIO_TIER_LIMITS_JSON`` overrides and extends them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from audiojobs.errors import ConfigError


@dataclass(frozen=True)
class TierLimits:
    daily_minutes: float | None  # None: unlimited
    concurrent_jobs: int
    max_file_mb: float
    priority: int = 2  # the level of the tier's jobs, 0-9 (9 first); see jobs/priority.py

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


DEFAULT_TIERS: dict[str, TierLimits] = {
    "free": TierLimits(daily_minutes=30, concurrent_jobs=1, max_file_mb=25, priority=2),
    "standard": TierLimits(daily_minutes=300, concurrent_jobs=3, max_file_mb=100, priority=4),
    "premium": TierLimits(daily_minutes=None, concurrent_jobs=10, max_file_mb=500, priority=6),
}
_FIELDS = {"daily_minutes", "concurrent_jobs", "max_file_mb", "priority"}
_REQUIRED = _FIELDS - {"priority"}  # a new tier without it gets the free tier's level


def _limits(name: str, raw: Any, base: TierLimits | None) -> TierLimits:
    where = f"AUDIO_TIER_LIMITS_JSON: tier {name!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    merged = {"priority": DEFAULT_TIERS["free"].priority, **(asdict(base) if base else {}), **raw}
    missing = _REQUIRED - set(merged)
    if missing:
        raise ConfigError(f"{where}: a new tier needs {', '.join(sorted(missing))}")
    minutes, concurrent, size = merged["daily_minutes"], merged["concurrent_jobs"], merged["max_file_mb"]
    level = merged["priority"]
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes < 0):
        raise ConfigError(f"{where}: daily_minutes must be a number >= 0 or null")
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise ConfigError(f"{where}: concurrent_jobs must be an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0:
        raise ConfigError(f"{where}: max_file_mb must be a number > 0")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ConfigError(f"{where}: priority must be an integer 0-9 (9 first)")
    return TierLimits(daily_minutes=minutes, concurrent_jobs=concurrent, max_file_mb=size, priority=level)


@lru_cache(maxsize=8)
def tier_table(tier_limits_json: str | None) -> dict[str, TierLimits]:
    """The default tiers with ``AUDIO_TIER_LIMITS_JSON`` applied (new names add tiers)."""
    tiers = dict(DEFAULT_TIERS)
    if not tier_limits_json:
        return tiers
    try:
        data = json.loads(tier_limits_json)
    except ValueError as exc:
        raise ConfigError(f"AUDIO_TIER_LIMITS_JSON is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("AUDIO_TIER_LIMITS_JSON must be a JSON object of tiers")
    for name, raw in data.items():
        if not isinstance(name, str) or not name or len(name) > 32:
            raise ConfigError("AUDIO_TIER_LIMITS_JSON: tier names are 1-32 characters")
        tiers[name] = _limits(name, raw, tiers.get(name))
    return tiers
