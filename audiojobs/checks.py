"""Settings checks that need what other packages own: run by every entry point at start.

``Settings.from_env`` judges each value's own format. Whether a tier name is a tier, a stage name a
stage, a URL guard entry a host, or a provider name a provider is known to the package that owns it;
this module asks each, so that a bad setting stops a process at start (``audiojobs`` commands, the
API's WSGI module, the worker module) with a message naming the setting, instead of failing a job
later. ``config`` stays below every feature package (it imports none of them).
"""

from __future__ import annotations

from limits import parse_many

from audiojobs.analysis.registry import PROVIDER_NAMES
from audiojobs.config import Settings
from audiojobs.errors import ConfigError
from audiojobs.jobs.states import Stage
from audiojobs.net.urlguard import UrlPolicy
from audiojobs.quotas.tiers import tier_table


def check_settings(settings: Settings) -> Settings:
    """``settings`` when every cross-package rule holds; ConfigError naming the setting otherwise."""
    tiers = tier_table(settings.tier_limits_json)  # raises ConfigError naming AUDIO_TIER_LIMITS_JSON
    for name, tier in (("AUDIOJOBS_DEFAULT_TIER", settings.default_tier),
                       ("AUDIOJOBS_SINGLE_USER_TIER", settings.single_user_tier)):
        if tier not in tiers:
            raise ConfigError(f"{name}: unknown tier {tier!r}; known: {', '.join(sorted(tiers))}")
    unknown = set(settings.worker_stages) - {stage.value for stage in Stage}
    if unknown:
        raise ConfigError(f"AUDIO_WORKER_STAGES: unknown stage(s) {', '.join(sorted(unknown))}")
    UrlPolicy.from_settings(settings)  # raises ConfigError naming a bad host entry
    rates = (("AUDIO_RATE_LIMIT", settings.rate_limit), ("AUDIO_LOGIN_RATE_LIMIT", settings.login_rate_limit),
             ("AUDIO_LOGIN_ADDRESS_RATE_LIMIT", settings.login_address_rate_limit))
    for name, value in rates:
        try:
            parse_many(value) if value else None
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a rate such as 600/minute or 10/second;1000/hour") from None
    if settings.analysis_default_api not in PROVIDER_NAMES:
        raise ConfigError(f"AUDIO_ANALYSIS_DEFAULT_API: unknown provider {settings.analysis_default_api!r}; "
                          f"known: {', '.join(sorted(PROVIDER_NAMES))}")
    return settings
