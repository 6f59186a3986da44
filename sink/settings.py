"""Settings of one sink worker."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from visionstream.settings import Section


class StoreSettings(Section):
    type: str = Field("sqlite", description="Store backend: sqlite (embedded default) or postgres.")
    path: str = Field("visionstream.db", description="SQLite database file (type sqlite).")
    dsn: SecretStr | None = Field(
        None, description="PostgreSQL connection string, e.g. postgresql://user:pass@host:5432/db (type postgres)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="PostgreSQL connect timeout.")

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> StoreSettings:
        if self.type == "postgres" and self.dsn is None:
            raise ValueError("store.type postgres needs store.dsn (env VISIONSTREAM_SINK__STORE__DSN)")
        return self


class RetentionSettings(Section):
    max_age_days: float | None = Field(None, gt=0, description="Delete events captured longer ago; null keeps all.")
    interval_s: float = Field(300.0, gt=0, description="How often the retention pass runs.")
    batch_size: int = Field(1000, ge=1, description="Events deleted per transaction, so writers never wait long.")


class SnapshotSettings(Section):
    enabled: bool = Field(
        True, description="When a track ends, store its best snapshot: the frame of its top score, cropped, JPEG."
    )
    margin: float = Field(0.25, ge=0, le=2, description="Context kept around the box, as a fraction of its size.")
    quality: int = Field(90, ge=10, le=100, description="JPEG quality of the stored snapshots.")
    queue: int = Field(1000, ge=1, description="Ended tracks waiting for their snapshot at most; past it, skipped.")
    fetch_timeout_s: float = Field(5.0, gt=0, description="Longest wait for one frame from the frames topic.")


class SinkSettings(Section):
    group_id: str = Field("visionstream-sink", description="Consumer group of the sink workers.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Where events are persisted.")
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="Deleting old events.")
    snapshots: SnapshotSettings = Field(default_factory=SnapshotSettings, description="Tracks' best snapshots.")
    batch_size: int = Field(
        5000,
        ge=1,
        le=10000,
        description="Events written per transaction at most (a backlog is written in batches this big; live "
        "traffic in whatever has arrived).",
    )
    writer_process: bool = Field(
        True,
        description="Write to the store from a process of its own, so decoding and writing each use a core; "
        "false: one process (a store that cannot be opened twice, a single core).",
    )
    purge_removed_faces: bool = Field(
        True,
        description="Follow the face gallery topic: a removed person's name is purged from stored rows and from events still arriving.",
    )
    poll_timeout_ms: int = Field(500, ge=10, le=1000, description="Longest wait for events in one poll.")
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the HTTP server: /metrics, /healthz, /readyz, /api/...; 0 disables."
    )
    metrics_addr: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    api_token_file: str | None = Field(
        None,
        description="File holding a bearer token that /api/... requires (a mounted secret); null: the API is open.",
    )
    retry_backoff_s: float = Field(1.0, gt=0, description="First wait before retrying a batch the store refused.")
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between retries (doubling up to it).")
