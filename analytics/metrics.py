"""Analytics metrics. Labels: camera, zone or line, label and direction (all bounded: cameras and labels through the
label cap, zones and lines by the settings)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "visionstream_analytics_events_consumed_total", "Detection events processed (repeats excluded).", ["camera"]
)
REPEATS = Counter(
    "visionstream_analytics_repeats_skipped_total",
    "Detection events skipped because their frame was already processed (at-least-once redelivery).",
    ["camera"],
)
TRACK_EVENTS = Counter(
    "visionstream_analytics_track_events_total", "Events published on the tracks topic, by kind.", ["camera", "kind"]
)
ACTIVE_TRACKS = Gauge("visionstream_analytics_active_tracks", "Live tracks now.", ["camera", "label"])
ZONE_OCCUPANCY = Gauge(
    "visionstream_analytics_zone_occupancy", "Objects in a zone now (after its inertia).", ["camera", "zone", "label"]
)
ZONE_OVERCROWDED = Gauge(
    "visionstream_analytics_zone_overcrowded",
    "1 while a zone holds more objects than its max_occupancy (all labels together), else 0.",
    ["camera", "zone"],
)
ZONE_ENTRIES = Counter(
    "visionstream_analytics_zone_entries_total", "Objects that entered a zone.", ["camera", "zone", "label"]
)
LOITERING = Counter(
    "visionstream_analytics_loitering_total",
    "Objects that stayed in a zone longer than its loiter_s.",
    ["camera", "zone", "label"],
)
LINE_CROSSINGS = Counter(
    "visionstream_analytics_line_crossings_total",
    "Objects that crossed a line, by direction (in: from the line's left to its right).",
    ["camera", "line", "direction", "label"],
)
DWELL_SECONDS = Histogram(
    "visionstream_analytics_zone_dwell_seconds",
    "Time an object spent in a zone, observed when it left.",
    ["camera", "zone"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
TRACK_SECONDS = Histogram(
    "visionstream_analytics_track_duration_seconds",
    "First to last sighting of an ended track.",
    ["label"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
TRACKER_SECONDS = Histogram(
    "visionstream_analytics_tracker_seconds",
    "Wall time of tracking, zones and lines for one frame.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
RESTORE_SECONDS = Histogram(
    "visionstream_analytics_state_restore_seconds",
    "Time to read one partition's camera state back from the changelog.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CAMERAS = Gauge("visionstream_analytics_cameras", "Cameras this worker holds state for.")
EVICTED = Counter(
    "visionstream_analytics_evicted_total",
    "Tracks ended over a cap: max_tracks of a camera (what=track) or max_cameras of a worker (what=camera).",
    ["what"],
)
ZONE_RELOADS = Counter(
    "visionstream_analytics_zone_reloads_total", "Zones file reloads, applied or rejected.", ["result"]
)
STATE_RESETS = Counter(
    "visionstream_analytics_state_resets_total",
    "Cameras whose state could not be written: their tracks ended (evicted) and they started afresh.",
)
RECOVERIES = Counter(
    "visionstream_analytics_recoveries_total",
    "Times a worker went back to its last commit (outputs not durable, a rebalance mid-commit, a broker fault).",
)
