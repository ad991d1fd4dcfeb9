"""What every command needs first: the settings, checked, or a clean exit naming the bad setting."""

from __future__ import annotations

import click

from audiojobs.checks import check_settings
from audiojobs.config import Settings, get_settings
from audiojobs.errors import ConfigError


def settings_or_exit() -> Settings:
    try:
        return check_settings(get_settings())
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
