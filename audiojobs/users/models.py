"""Users, their API keys, and the daily usage ledger."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from audiojobs.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="user")
    tier: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # Every token carries the version it was issued under; a password change or disabling the user
    # moves it on, and every token issued before is refused at once (every API process reads it here).
    token_version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiKey(Base):
    """A user's API key; only its SHA-256 is kept (the key is shown once, at creation)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UsageDaily(Base):
    """``audio_usage_daily``: one row per user and UTC day; the source of truth of minute quotas."""

    __tablename__ = "audio_usage_daily"

    user_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    minutes_used: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0, server_default="0")
    jobs_started: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
