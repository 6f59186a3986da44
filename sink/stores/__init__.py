"""Store registry: config `store.type` -> backend class."""

from __future__ import annotations

from collections.abc import Callable

from sink.settings import StoreSettings
from sink.stores.base import Store, StoreUnavailableError
from sink.stores.sqlite import SqliteStore


def _postgres(s: StoreSettings) -> Store:
    from sink.stores.postgres import PostgresStore  # psycopg only when asked for

    assert s.dsn is not None  # enforced by StoreSettings
    return PostgresStore(s.dsn.get_secret_value(), s.connect_timeout_s)


STORES: dict[str, Callable[[StoreSettings], Store]] = {
    "sqlite": lambda s: SqliteStore(s.path),
    "postgres": _postgres,
}

__all__ = ["STORES", "Store", "StoreUnavailableError", "SqliteStore", "open_store"]


def open_store(settings: StoreSettings) -> Store:
    factory = STORES.get(settings.type)
    if factory is None:
        raise ValueError(f"unknown store type {settings.type!r}; known: {', '.join(sorted(STORES))}")
    return factory(settings)
