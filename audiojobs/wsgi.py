"""WSGI entry point for gunicorn: ``gunicorn audiojobs.wsgi:app``."""
from audiojobs import create_app, logs
from audiojobs.config import get_settings

logs.configure(get_settings())
app = create_app()
