"""Process-wide resources shared by the API and its CLI commands: engines, key stores.

Engines are pooled and expensive to create, so there is one per database URL.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore, open_keystore
from taxaddr.db import make_engine, stop_background_checkpoints

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_keystores: dict[tuple[Path, str], KeyStore] = {}


def engine_for(settings: Settings) -> Engine:
    """The shared engine for ``settings.database_url`` (created on first use)."""
    with _lock:
        engine = _engines.get(settings.database_url)
        if engine is None:
            engine = make_engine(settings.database_url)
            _engines[settings.database_url] = engine
        return engine


def keystore_for(settings: Settings) -> KeyStore:
    """The shared key store for the settings' keys directory."""
    key = (Path(settings.keys_dir).resolve(), settings.keystore)
    with _lock:
        store = _keystores.get(key)
        if store is None:
            store = open_keystore(settings.keys_dir, settings.keystore, settings)
            _keystores[key] = store
        return store


def dispose_engines() -> None:
    """Close every pooled connection (tests and server shutdown)."""
    stop_background_checkpoints()
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _keystores.clear()
