"""WSGI entry point for gunicorn: ``gunicorn audiojobs.wsgi:app``.

An entry point, so it may read: the settings, with what ``audiojobs up`` keeps in ``var/``
(API key, JWT secret, the embedded Redis's URL) where the environment has none.
"""
from audiojobs import logs
from audiojobs.api.app import create_app
from audiojobs.config import get_settings
from audiojobs.local_secrets import with_local_secrets

logs.configure(get_settings())
app = create_app(with_local_secrets(get_settings()))  # create_app checks the settings
