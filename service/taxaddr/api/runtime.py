"""The API process's services: one :class:`~taxaddr.services.Services` per settings.

A server process serves one configuration, built once (:meth:`Services.from_settings`,
the composition root); engines are pooled and expensive to create, so the app, its
routes and the server's start-up checks share it. Tests build several worlds (each
its own settings) in one process, hence one per distinct database URL, keys
directory and key store kind.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import stop_background_checkpoints
from taxaddr.services import Services

_lock = threading.Lock()
_services: dict[tuple[str, Path, str], Services] = {}


def services_for(settings: Settings) -> Services:
    """The process's services for ``settings`` (built on first use)."""
    key = (settings.database_url, Path(settings.keys_dir).resolve(), settings.keystore)
    with _lock:
        services = _services.get(key)
        if services is None:
            services = _services[key] = Services.from_settings(settings)
        return services


def engine_for(settings: Settings) -> Engine:
    """The shared engine for ``settings``."""
    return services_for(settings).engine


def keystore_for(settings: Settings) -> KeyStore:
    """The shared key store for ``settings``."""
    return services_for(settings).keystore


def dispose_engines() -> None:
    """Close every pooled connection (tests and server shutdown)."""
    stop_background_checkpoints()
    with _lock:
        for services in _services.values():
            services.close()
        _services.clear()
