"""Signed webhooks: the deliveries outbox (models), signing and sending (service), the Celery task that
sends one try (tasks). The HTTP routes are in :mod:`audiojobs.api.webhooks`."""
