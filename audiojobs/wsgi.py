"""WSGI entry point for gunicorn: ``gunicorn audiojobs.wsgi:app``."""
from audiojobs import create_app

app = create_app()
