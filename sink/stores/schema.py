"""The store schema, once for every backend: versioned migrations in DDL that SQLite and PostgreSQL both accept.

SQLite maps the declared types by affinity (BIGINT -> INTEGER, DOUBLE PRECISION and REAL -> REAL), so the
same statements give both backends the same tables, columns and indexes.
"""

# Index i brings the schema from version i to i + 1. Append only; never edit a released migration.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        camera_id TEXT NOT NULL,
        frame_sequence BIGINT NOT NULL,
        capture_ts_ms BIGINT NOT NULL,
        inference_ts_ms BIGINT NOT NULL,
        persisted_ts_ms BIGINT NOT NULL,
        model_name TEXT NOT NULL,
        model_version TEXT NOT NULL,
        inference_latency_ms DOUBLE PRECISION NOT NULL,
        frame_width INTEGER NOT NULL,
        frame_height INTEGER NOT NULL,
        detection_count INTEGER NOT NULL
    );
    CREATE TABLE detections (
        event_id TEXT NOT NULL REFERENCES events(event_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        camera_id TEXT NOT NULL,
        capture_ts_ms BIGINT NOT NULL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        x_min REAL NOT NULL,
        y_min REAL NOT NULL,
        x_max REAL NOT NULL,
        y_max REAL NOT NULL,
        keypoints TEXT NOT NULL,
        PRIMARY KEY (event_id, idx)
    );
    CREATE INDEX events_camera_time ON events (camera_id, capture_ts_ms);
    CREATE INDEX events_time ON events (capture_ts_ms);
    CREATE INDEX detections_label_time ON detections (label, capture_ts_ms);
    CREATE INDEX detections_camera_label_time ON detections (camera_id, label, capture_ts_ms);
    """,
    """
    CREATE TABLE tracks (
        track_id TEXT PRIMARY KEY,
        camera_id TEXT NOT NULL,
        label TEXT NOT NULL,
        state TEXT NOT NULL,
        first_seen_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        last_sequence BIGINT NOT NULL,
        lifecycle_rank INTEGER NOT NULL,
        score REAL,
        top_score REAL,
        x_min REAL,
        y_min REAL,
        x_max REAL,
        y_max REAL,
        zones TEXT NOT NULL,
        zones_entered TEXT NOT NULL,
        end_reason TEXT,
        identity TEXT,
        persisted_ts_ms BIGINT NOT NULL
    );
    CREATE TABLE track_events (
        event_id TEXT PRIMARY KEY,
        camera_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        track_id TEXT,
        label TEXT NOT NULL,
        frame_sequence BIGINT NOT NULL,
        ts_ms BIGINT NOT NULL,
        zone TEXT,
        line TEXT,
        direction TEXT,
        dwell_ms BIGINT,
        occupancy INTEGER
    );
    CREATE INDEX tracks_camera_time ON tracks (camera_id, first_seen_ms);
    CREATE INDEX tracks_time ON tracks (first_seen_ms);
    CREATE INDEX tracks_last_seen ON tracks (last_seen_ms);
    CREATE INDEX track_events_camera_time ON track_events (camera_id, ts_ms);
    CREATE INDEX track_events_time ON track_events (ts_ms);
    CREATE INDEX track_events_track ON track_events (track_id);
    """,
    # detection_event v3: what models on a region made of it. Appended columns, in the order detection_rows gives.
    """
    ALTER TABLE detections ADD COLUMN identity TEXT;
    ALTER TABLE detections ADD COLUMN distance REAL;
    ALTER TABLE detections ADD COLUMN ocr_text TEXT;
    ALTER TABLE detections ADD COLUMN attributes TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX detections_identity_time ON detections (identity, capture_ts_ms);
    """,
    # track_event v2: a track's best plate read; plates are looked up by text (the API's `text` filter)
    """
    ALTER TABLE tracks ADD COLUMN ocr_text TEXT;
    CREATE INDEX tracks_ocr_text ON tracks (ocr_text);
    CREATE INDEX tracks_identity ON tracks (identity);
    CREATE INDEX detections_ocr_text_time ON detections (ocr_text, capture_ts_ms);
    """,
    # detection_event v4: where the event's frame is on Kafka (appended in the order event_row gives)
    """
    ALTER TABLE events ADD COLUMN frame_topic TEXT;
    ALTER TABLE events ADD COLUMN frame_partition INTEGER;
    ALTER TABLE events ADD COLUMN frame_offset BIGINT;
    """,
    # The console (issue 16): each track's best sighting (the frame of its top score and the box on it), and the
    # snapshot the sink cut from that frame when the track ended (it goes when its track goes); and where each
    # track event happened (its box's centre), the track's path.
    """
    ALTER TABLE tracks ADD COLUMN best_sequence BIGINT;
    ALTER TABLE tracks ADD COLUMN best_ts_ms BIGINT;
    ALTER TABLE tracks ADD COLUMN best_x_min REAL;
    ALTER TABLE tracks ADD COLUMN best_y_min REAL;
    ALTER TABLE tracks ADD COLUMN best_x_max REAL;
    ALTER TABLE tracks ADD COLUMN best_y_max REAL;
    ALTER TABLE track_events ADD COLUMN x REAL;
    ALTER TABLE track_events ADD COLUMN y REAL;
    CREATE TABLE snapshots (
        track_id TEXT PRIMARY KEY REFERENCES tracks(track_id) ON DELETE CASCADE,
        camera_id TEXT NOT NULL,
        frame_sequence BIGINT NOT NULL,
        ts_ms BIGINT NOT NULL,
        jpeg BYTEA NOT NULL
    );
    """,
    # Since detection_event v5: what of the frame the model looked at (whole, regions, none); `none` events have
    # no detections without meaning nothing was there.
    """
    ALTER TABLE events ADD COLUMN look TEXT NOT NULL DEFAULT 'whole';
    """,
    # Most detections name nobody and read no plate: index only those that do. The queries filter with `= ?`,
    # which implies NOT NULL, so both backends still use these indexes; the sink writes a sixth less per detection.
    """
    DROP INDEX detections_identity_time;
    CREATE INDEX detections_identity_time ON detections (identity, capture_ts_ms) WHERE identity IS NOT NULL;
    DROP INDEX detections_ocr_text_time;
    CREATE INDEX detections_ocr_text_time ON detections (ocr_text, capture_ts_ms) WHERE ocr_text IS NOT NULL;
    """,
]
