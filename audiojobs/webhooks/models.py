"""Tables of the webhooks feature: deliveries (an outbox of events) and the users' signing secrets."""

from __future__ import annotations

import datetime as dt
import uuid as uuid_mod
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from audiojobs.db import Base, JSONType, UTCDateTime, utcnow
from audiojobs.webhooks.states import DeliveryStatus


class WebhookDelivery(Base):
    """One event for one job's ``callback_url``: tried until delivered or out of attempts (outbox)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_due", "status", "next_attempt_at"),
                      sa.Index("ix_webhook_job", "job_id"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True, nullable=False,
                                      default=lambda: str(uuid_mod.uuid4()))
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    owner_user_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    event: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    url: Mapped[str] = mapped_column(sa.Text, nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    resent_from: Mapped[str | None] = mapped_column(sa.String(36))  # uuid of the delivery sent again
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookSecret(Base):
    """A user's own webhook signing secret (``GET /webhooks/secret`` makes one on first use)."""

    __tablename__ = "webhook_secrets"

    owner_user_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    secret: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
