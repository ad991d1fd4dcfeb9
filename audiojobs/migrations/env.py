"""Alembic environment: the URL comes from audiojobs settings (or the caller's Config)."""

from __future__ import annotations

from alembic import context

from audiojobs.db import Base, get_engine
from audiojobs.jobs import models  # noqa: F401  (registers the tables on Base.metadata)
from audiojobs.users import models as user_models  # noqa: F401
from audiojobs.webhooks import models as webhook_models  # noqa: F401

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    from audiojobs.config import get_settings

    url = get_settings().effective_database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
