"""Settings of the Django Channels peer: the smallest project that serves
Switchyard's /live subset (see ../README.md). No database, no models, no
middleware; one daphne process with the in-memory channel layer, like
Switchyard's embedded default (one process, in-memory broker)."""

import os

SECRET_KEY = os.environ.get("PEER_SECRET_KEY", "bench-peer-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

DATABASES = {}
USE_TZ = True

CHANNEL_LAYERS = {
    # Defaults kept (capacity 100 messages per consumer, expiry 60 s): the
    # configuration a Channels user gets out of the box.
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
