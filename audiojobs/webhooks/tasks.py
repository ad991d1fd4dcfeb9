"""The webhooks feature's Celery task: one try of one delivery."""

from __future__ import annotations

from audiojobs.celery_app import AudioJobsTask, app_settings, celery
from audiojobs.webhooks import service


@celery.task(bind=True, base=AudioJobsTask, name="audiojobs.deliver_webhook")
def deliver_webhook(self: AudioJobsTask, delivery_id: int) -> str | None:
    """One try of a webhook delivery; a retry is due later and sent by the reaper (see the service)."""
    return service.deliver(app_settings(), delivery_id)
