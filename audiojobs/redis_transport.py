"""kombu's Redis transport with one fix: a worker outlives losing the broker at any moment.

When the broker connection drops, Celery's consumer first collects the connection (which clears
the transport's connection info) and then closes it. A channel still open at that point (it was
waiting in BRPOP when Redis went away) restores its unacknowledged messages as it closes, and for
that builds a new Redis pool from the connection info that is gone: an AttributeError, which the
consumer takes as unrecoverable, and the worker exits (kombu 5.7, Celery 5.6; seen in
tests/integration/test_faults.py's Redis restart). Here that case is a connection error, which
the close ignores like every other. The messages stay in Redis's ``unacked`` hash, restored after
the visibility timeout; a job left without a message is dispatched again from the database.

celeryconfig.py names this transport for ``redis://`` brokers (``rediss://`` and others keep kombu's).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
