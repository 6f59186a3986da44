"""Deletes events older than the configured age, in small transactions, beside the writer."""

from __future__ import annotations

import logging
import threading
import time

from sink import metrics
from sink.settings import RetentionSettings, StoreSettings
from sink.stores import StoreUnavailableError, open_store

log = logging.getLogger(__name__)


def retention_pass(store: object, max_age_days: float, batch_size: int, stop: threading.Event) -> int:
    """Delete everything older than the cutoff, one batch per transaction; return how many events went."""
    cutoff_ms = int((time.time() - max_age_days * 86_400) * 1000)
    total = 0
    while not stop.is_set():
        deleted = store.delete_older_than(cutoff_ms, batch_size)  # type: ignore[attr-defined]
        total += deleted
        metrics.RETENTION_DELETED.inc(deleted)
        if deleted < batch_size:
            break
        stop.wait(0.05)  # let the writer in between batches
    return total


class RetentionThread(threading.Thread):
    def __init__(self, store: StoreSettings, retention: RetentionSettings, stop: threading.Event) -> None:
        super().__init__(name="sink-retention", daemon=True)
        self.store_settings = store
        self.retention = retention
        self.stop_event = stop

    def run(self) -> None:
        assert self.retention.max_age_days is not None
        store = None
        while not self.stop_event.is_set():
            try:
                store = store or open_store(self.store_settings)
                n = retention_pass(store, self.retention.max_age_days, self.retention.batch_size, self.stop_event)
                if n:
                    log.info("retention deleted events=%d older_than_days=%g", n, self.retention.max_age_days)
            except StoreUnavailableError as exc:
                log.warning("retention pass skipped: %s", exc)
            self.stop_event.wait(self.retention.interval_s)
        if store is not None:
            store.close()
