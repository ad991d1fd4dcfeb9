"""Celery entry point: ``celery -A audiojobs.worker worker``. Importing it checks the settings and
configures the app; it starts nothing and reads no file (``REDIS_URL`` must be set: the
``audiojobs`` commands pass it on)."""
from audiojobs.celery_app import celery_init_app
from audiojobs.checks import check_settings
from audiojobs.config import get_settings
from audiojobs.jobs import events as job_events

settings = check_settings(get_settings())
app = celery_init_app(settings)
job_events.publish_to(settings)  # the jobs this worker changes are announced on its Redis
