"""A webhook delivery's status moves only as its table allows."""

from __future__ import annotations

import pytest

from audiojobs.webhooks.states import DeliveryStatus, moved


def test_an_ended_delivery_never_moves() -> None:
    assert moved("pending", DeliveryStatus.DELIVERED) == "delivered"
    assert moved("pending", DeliveryStatus.FAILED) == "failed"
    for end in ("delivered", "failed"):
        for wanted in DeliveryStatus:
            with pytest.raises(ValueError):
                moved(end, wanted)
