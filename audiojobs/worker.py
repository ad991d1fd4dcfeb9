"""Celery entry point: ``celery -A audiojobs.worker worker``."""
from audiojobs.celery_app import celery_init_app

app = celery_init_app()
