"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from audiojobs.db import Base, get_engine
from audiojobs.jobs import models  # noqa: F401
from audiojobs.migrate import downgrade, upgrade
from audiojobs.users import models as user_models  # noqa: F401


def test_migrated_schema_matches_models(db_url: str) -> None:
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(db_url: str) -> None:
    downgrade(db_url, "base")
    upgrade(db_url)
    with get_engine(db_url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
