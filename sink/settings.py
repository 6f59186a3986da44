"""Settings of one sink worker."""

from __future__ import annotations

from pydantic import Field

from visionstream.settings import Section


class StoreSettings(Section):
    type: str = Field("sqlite", description="Store backend; see sink/stores/.")
    path: str = Field("visionstream.db", description="SQLite database file (type sqlite).")


class SinkSettings(Section):
    group_id: str = Field("visionstream-sink", description="Consumer group of the sink workers.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Where events are persisted.")
    batch_size: int = Field(500, ge=1, le=10000, description="Events written per transaction at most.")
    poll_timeout_ms: int = Field(500, ge=10, le=1000, description="Longest wait for events in one poll.")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Port of /metrics; 0 disables the server.")
    metrics_addr: str = Field("0.0.0.0", description="Address the /metrics server binds to.")
    retry_backoff_s: float = Field(1.0, gt=0, description="Wait before retrying a batch the store refused.")
