"""Event queries shared by the HTTP API, the `visionstream events` CLI and every store backend.

Filters are validated here (a bad parameter is a QueryError naming it); the SQL is written once with `?`
placeholders, and each backend adapts the placeholder style.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_LIMIT = 1000


class QueryError(ValueError):
    """A query parameter is missing or invalid; the message names it."""


def parse_time_ms(name: str, value: str | None) -> int | None:
    """Epoch milliseconds, or an ISO-8601 time (with offset or Z)."""
    if value is None or value == "":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"{name}: expected epoch milliseconds or ISO-8601 time, got {value!r}") from exc
    if ts.tzinfo is None:
        raise QueryError(f"{name}: ISO-8601 time needs an offset or Z, got {value!r}")
    return int(ts.timestamp() * 1000)


def parse_duration_ms(name: str, value: str) -> int:
    """'500ms', '30s', '5m', '1h', '1d', or plain seconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = value.strip().lower()
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            ms = int(text[: -len(suffix)]) * units[suffix]
            break
    else:
        if not text.isdigit():
            raise QueryError(f"{name}: expected a duration like 30s, 5m, 1h or 1d, got {value!r}")
        ms = int(text) * 1000
    if ms <= 0:
        raise QueryError(f"{name}: must be positive")
    return ms


@dataclass(frozen=True)
class EventFilter:
    camera: str | None = None
    label: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    min_score: float | None = None
    identity: str | None = None  # a recognised name (a gallery person, a known plate's name), or `unknown`
    text: str | None = None  # a plate (text read), exactly as stored

    @classmethod
    def from_params(cls, params: dict[str, str]) -> EventFilter:
        min_score = params.get("min_score")
        score = None
        if min_score not in (None, ""):
            try:
                score = float(min_score)  # type: ignore[arg-type]
            except ValueError as exc:
                raise QueryError(f"min_score: expected a number in [0, 1], got {min_score!r}") from exc
            if not 0.0 <= score <= 1.0:
                raise QueryError(f"min_score: expected a number in [0, 1], got {min_score!r}")
            # Scores are float32 on the wire and in PostgreSQL's `real`: compare at that precision, or a
            # stored 0.7 (0.69999999) would fail `>= 0.7`.
            score = struct.unpack("f", struct.pack("f", score))[0]
        f = cls(
            camera=params.get("camera") or None,
            label=params.get("label") or None,
            since_ms=parse_time_ms("since", params.get("since")),
            until_ms=parse_time_ms("until", params.get("until")),
            min_score=score,
            identity=_bounded("identity", params.get("identity")),
            text=_bounded("text", params.get("text")),
        )
        if f.since_ms is not None and f.until_ms is not None and f.since_ms >= f.until_ms:
            raise QueryError("since must be earlier than until")
        return f


def _bounded(name: str, value: str | None) -> str | None:
    if value is not None and len(value) > 256:
        raise QueryError(f"{name}: at most 256 characters (got {len(value)})")
    return value or None


def parse_limit(value: str | None, default: int = 100) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:  # type: ignore[union-attr]
        raise QueryError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def encode_cursor(capture_ts_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([capture_ts_ms, event_id]).encode()).decode()


def decode_cursor(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    try:
        ts, event_id = json.loads(base64.urlsafe_b64decode(value.encode()))
        return int(ts), str(event_id)
    except (ValueError, TypeError) as exc:
        raise QueryError("cursor: not a cursor returned by this API") from exc


EVENT_COLUMNS = (
    "event_id, camera_id, frame_sequence, capture_ts_ms, inference_ts_ms, persisted_ts_ms, model_name, "
    "model_version, inference_latency_ms, frame_width, frame_height, detection_count, frame_topic, frame_partition, "
    "frame_offset, look"
)
DETECTION_COLUMNS = (
    "event_id, idx, label, score, x_min, y_min, x_max, y_max, keypoints, identity, distance, ocr_text, attributes"
)


def _detection_match(f: EventFilter, alias: str) -> tuple[list[str], list[Any]]:
    return _conditions(
        (f"{alias}.label = ?", f.label),
        (f"{alias}.score >= ?", f.min_score),
        (f"{alias}.identity = ?", f.identity),
        (f"{alias}.ocr_text = ?", f.text),
    )


def _camera_time_match(f: EventFilter, alias: str) -> tuple[list[str], list[Any]]:
    return _conditions(
        (f"{alias}.camera_id = ?", f.camera),
        (f"{alias}.capture_ts_ms >= ?", f.since_ms),
        (f"{alias}.capture_ts_ms < ?", f.until_ms),
    )


def events_page_sql(f: EventFilter, limit: int, cursor: tuple[int, str] | None) -> tuple[str, list[Any]]:
    """Newest first; keyset pagination on (capture_ts_ms, event_id) so pages stay stable under inserts."""
    conds, params = _camera_time_match(f, "e")
    det_conds, det_params = _detection_match(f, "d")
    if det_conds:
        conds.append(f"EXISTS (SELECT 1 FROM detections d WHERE d.event_id = e.event_id AND {' AND '.join(det_conds)})")
        params.extend(det_params)
    if cursor is not None:
        conds.append("(e.capture_ts_ms < ? OR (e.capture_ts_ms = ? AND e.event_id < ?))")
        params.extend([cursor[0], cursor[0], cursor[1]])
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    sql = f"SELECT {EVENT_COLUMNS} FROM events e {where} ORDER BY e.capture_ts_ms DESC, e.event_id DESC LIMIT ?"
    return sql, [*params, limit]


def detections_of_sql(event_ids: list[str]) -> tuple[str, list[Any]]:
    marks = ",".join("?" * len(event_ids))
    sql = f"SELECT {DETECTION_COLUMNS} FROM detections WHERE event_id IN ({marks}) ORDER BY event_id, idx"
    return sql, list(event_ids)


def label_counts_sql(f: EventFilter, bucket_ms: int) -> tuple[str, list[Any]]:
    """Detections per label per time bucket (bucket start in epoch ms)."""
    conds, params = _camera_time_match(f, "d")
    det_conds, det_params = _detection_match(f, "d")
    conds += det_conds
    params = [bucket_ms, bucket_ms, *params, *det_params]
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    sql = (
        f"SELECT (d.capture_ts_ms / ?) * ? AS bucket_start_ms, d.label, COUNT(*) FROM detections d {where} "
        "GROUP BY bucket_start_ms, d.label ORDER BY bucket_start_ms, d.label"
    )
    return sql, params


def event_row_to_dict(row: tuple, detections: list[tuple]) -> dict[str, Any]:
    names = [c.strip() for c in EVENT_COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["inference_latency_ms"] = float(out["inference_latency_ms"])
    ref = (out.pop("frame_topic"), out.pop("frame_partition"), out.pop("frame_offset"))
    # where the frame is on Kafka (detection_event v4), for fetching its image while the topic retains it
    out["frame_ref"] = None if ref[0] is None else {"topic": ref[0], "partition": int(ref[1]), "offset": int(ref[2])}
    out["detections"] = [
        {
            "label": d[2],
            "score": float(d[3]),
            "box": {"x_min": float(d[4]), "y_min": float(d[5]), "x_max": float(d[6]), "y_max": float(d[7])},
            "keypoints": [{"name": n, "x": x, "y": y} for n, x, y in json.loads(d[8])],
            "identity": d[9],
            "distance": None if d[10] is None else float(d[10]),
            "text": d[11],
            "attributes": [{"name": n, "score": float(v)} for n, v in json.loads(d[12])],
        }
        for d in detections
    ]
    return out


TRACK_COLUMNS = (
    "track_id, camera_id, label, state, first_seen_ms, last_seen_ms, last_sequence, score, top_score, "
    "x_min, y_min, x_max, y_max, zones, zones_entered, end_reason, identity, ocr_text, "
    "best_sequence, best_ts_ms, best_x_min, best_y_min, best_x_max, best_y_max"
)
TRACK_EVENT_COLUMNS = "event_id, kind, frame_sequence, ts_ms, zone, line, direction, dwell_ms, occupancy, x, y"


def _conditions(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The conditions (one `?` each) whose value is not None, and their values."""
    kept = [(cond, value) for cond, value in pairs if value is not None]
    return [c for c, _ in kept], [v for _, v in kept]


def track_page_sql(
    f: EventFilter, limit: int, cursor: tuple[int, str] | None, zone: str | None = None
) -> tuple[str, list[Any]]:
    """Tracks newest first by first sighting, keyset-paginated on (first_seen_ms, track_id). The time range
    selects tracks seen in it (first sighting before `until`, last at or after `since`)."""
    if zone is not None and not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", zone):
        raise QueryError(f"zone: a zone name is 1-64 of A-Z a-z 0-9 . _ : - (got {zone[:80]!r})")
    # zones_entered is a JSON array of such names: match the quoted name, `_` escaped (LIKE's any-character)
    conds, params = _conditions(
        ("t.camera_id = ?", f.camera),
        ("t.label = ?", f.label),
        ("t.top_score >= ?", f.min_score),
        ("t.identity = ?", f.identity),
        ("t.ocr_text = ?", f.text),
        ("t.last_seen_ms >= ?", f.since_ms),
        ("t.first_seen_ms < ?", f.until_ms),
        ("t.zones_entered LIKE ? ESCAPE '!'", None if zone is None else '%"' + zone.replace("_", "!_") + '"%'),
    )
    if cursor is not None:
        conds.append("(t.first_seen_ms < ? OR (t.first_seen_ms = ? AND t.track_id < ?))")
        params.extend([cursor[0], cursor[0], cursor[1]])
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    sql = f"SELECT {TRACK_COLUMNS} FROM tracks t {where} ORDER BY t.first_seen_ms DESC, t.track_id DESC LIMIT ?"
    return sql, [*params, limit]


def track_row_to_dict(row: tuple) -> dict[str, Any]:
    names = [c.strip() for c in TRACK_COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    box = [out.pop(k) for k in ("x_min", "y_min", "x_max", "y_max")]
    out["box"] = (
        None if box[0] is None else dict(zip(("x_min", "y_min", "x_max", "y_max"), map(float, box), strict=True))
    )
    out["zones"] = json.loads(out["zones"])
    out["zones_entered"] = json.loads(out["zones_entered"])
    for k in ("score", "top_score"):
        out[k] = None if out[k] is None else float(out[k])
    out["text"] = out.pop("ocr_text")  # the track's best plate read, named as in its events
    best = [out.pop(k) for k in ("best_x_min", "best_y_min", "best_x_max", "best_y_max")]
    sequence, ts = out.pop("best_sequence"), out.pop("best_ts_ms")
    out["best"] = (
        None
        if sequence is None
        else {"frame_sequence": int(sequence), "capture_ts_ms": int(ts),
              "box": dict(zip(("x_min", "y_min", "x_max", "y_max"), map(float, best), strict=True))}
    )  # fmt: skip
    return out


ZONE_KINDS = ("zone_enter", "zone_exit", "line_cross", "occupancy")


def zone_counts_sql(f: EventFilter, place: str | None) -> tuple[str, list[Any]]:
    """The zone and line events the counts are made of, in time order. Occupancy is read from before `since`
    too (from a day earlier), so the level a bucket starts at is known."""
    conds, params = _conditions(("e.camera_id = ?", f.camera), ("e.label = ?", f.label), ("e.ts_ms < ?", f.until_ms))
    conds.append(f"e.kind IN ({','.join('?' * len(ZONE_KINDS))})")
    params += ZONE_KINDS
    if place is not None:
        conds.append("(e.zone = ? OR e.line = ?)")
        params += [place, place]
    if f.since_ms is not None:
        conds.append("(e.ts_ms >= ? OR (e.kind = 'occupancy' AND e.ts_ms >= ?))")
        params += [f.since_ms, f.since_ms - 86_400_000]
    sql = (
        "SELECT e.ts_ms, e.camera_id, COALESCE(e.zone, e.line), e.label, e.kind, e.direction, e.occupancy "
        f"FROM track_events e WHERE {' AND '.join(conds)} ORDER BY e.ts_ms, e.frame_sequence, e.event_id"
    )
    return sql, params


def zone_counts(rows: list[tuple], bucket_ms: int, since_ms: int | None) -> list[dict[str, Any]]:
    """Buckets with activity, per camera, zone or line, and label. peak_occupancy is the most objects in the zone
    at any time in the bucket, counting those already inside when it began (null for lines)."""
    level: dict[tuple[str, str, str], int] = {}
    out: dict[tuple[int, str, str, str], dict[str, Any]] = {}
    for ts, camera, place, label, kind, direction, occupancy in rows:
        key = (camera, place, label)
        if since_ms is not None and ts < since_ms:  # occupancy before the range: only the level it leaves
            level[key] = int(occupancy or 0)
            continue
        bucket = (int(ts) // bucket_ms) * bucket_ms
        row = out.get((bucket, *key))
        if row is None:
            row = out[(bucket, *key)] = {
                "bucket_start_ms": bucket,
                "camera_id": camera,
                "place": place,
                "label": label,
                "entries": 0,
                "exits": 0,
                "crossings_in": 0,
                "crossings_out": 0,
                "peak_occupancy": level.get(key),
            }
        if kind == "zone_enter":
            row["entries"] += 1
        elif kind == "zone_exit":
            row["exits"] += 1
        elif kind == "line_cross":
            row["crossings_in" if direction == "in" else "crossings_out"] += 1
        if kind == "occupancy":
            level[key] = int(occupancy)
            row["peak_occupancy"] = max(row["peak_occupancy"] or 0, int(occupancy))
    return [out[k] for k in sorted(out)]
