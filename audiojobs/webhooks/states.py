"""A webhook delivery's statuses and the transitions allowed between them: one table, checked on
every move. A delivery is tried while ``pending``; it ends ``delivered`` (a 2xx answer) or
``failed`` (out of tries). Sending an event again makes a new delivery; an ended one never moves."""

from __future__ import annotations

import enum


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}),
    DeliveryStatus.DELIVERED: frozenset(),
    DeliveryStatus.FAILED: frozenset(),
}


def moved(current: str, wanted: DeliveryStatus) -> str:
    """``wanted``'s stored value when ``current`` may become it; ValueError otherwise."""
    if wanted not in TRANSITIONS[DeliveryStatus(current)]:
        raise ValueError(f"a delivery that is {current} cannot become {wanted.value}")
    return wanted.value
