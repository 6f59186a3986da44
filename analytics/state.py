"""A camera's analytics state as a record of the project's own schema (schemas/analytics_state.avsc).

The changelog topic holds one such record per camera. Our own state (tracks, zone stays, occupancy, line crossing
memory) has typed fields. The tracker is the `trackers` package's object: it is written as a tree of typed values
(numbers, strings, numpy arrays as raw bytes, containers, and objects of that package's classes), and decoding
builds nothing else: no pickle, no import, no code named by the bytes. A restored processor continues exactly as
the one that wrote the record would have (tests/unit/test_analytics_state.py).
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import numpy as np

from analytics.camera import CameraProcessor, Track, ZoneStay
from analytics.settings import CameraAnalyticsSettings
from schemas.codec import DecodeError, SingleObjectCodec, load_schema, released_versions

# Classes the tracker tree may hold are looked up only in these already-imported packages.
TRACKER_PACKAGES = ("trackers.",)
ARRAY_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool", "uint8"})
MAX_DEPTH = 32


class StateError(DecodeError):
    """A state record that does not describe a camera this code can restore."""


class StateCodec:
    def __init__(self) -> None:
        # older released versions too: state written before an upgrade is restored by the new code
        self.codec = SingleObjectCodec(
            load_schema("analytics_state"), writer_schemas=released_versions("analytics_state")
        )

    def encode(self, record: dict[str, Any]) -> bytes:
        return self.codec.encode(record)

    def decode(self, message: bytes) -> dict[str, Any]:
        return self.codec.decode(message)


def snapshot(p: CameraProcessor, detections_offset: int) -> dict[str, Any]:
    """The processor's whole state as an analytics_state record."""
    width, height = p._size or (0, 0)
    return {
        "camera_id": p.camera,
        "last_sequence": p.last_sequence,
        "last_ts_ms": p.last_ts_ms,
        "last_clock_ms": p.last_clock_ms,
        "detections_offset": detections_offset,
        "labels": list(p._label_names),
        "frame_width": width,
        "frame_height": height,
        "tracks": [_track_record(tid, t) for tid, t in p.tracks.items()],
        "occupancy": [{"zone": z, "label": lb, "count": n} for (z, lb), n in sorted(p.occupancy.items())],
        "lines": [{"line": name, "crossers": _crossers(zone)} for name, zone in p._lines.items()],
        "tracker": to_value(p._tracker),
    }


def restore(settings: CameraAnalyticsSettings, rec: dict[str, Any]) -> CameraProcessor:
    """A processor in the state `rec` describes, under the camera's current settings."""
    p = CameraProcessor(settings)
    p.last_sequence = rec["last_sequence"]
    p.last_ts_ms = rec["last_ts_ms"]
    p.last_clock_ms = rec["last_clock_ms"]
    p._label_names = list(rec["labels"])
    p._labels = {name: i for i, name in enumerate(p._label_names)}
    p.tracks = {t["tracker_id"]: _track(t) for t in rec["tracks"]}
    p.occupancy = {(o["zone"], o["label"]): o["count"] for o in rec["occupancy"]}
    tracker = from_value(rec["tracker"])
    if type(tracker) is type(p._tracker):
        p._tracker = tracker
    else:  # the camera's tracker kind changed since the record was written
        p._reset_pending = True
    if rec["frame_width"] and rec["frame_height"]:
        p._geometry(rec["frame_width"], rec["frame_height"])
        for line in rec["lines"]:
            zone = p._lines.get(line["line"])
            if zone is not None:  # a line removed from the settings since then is simply gone
                _restore_crossers(zone, line["crossers"])
    known = {z.name for z in settings.zones}
    for track in p.tracks.values():
        track.zones = {z: s for z, s in track.zones.items() if z in known}
    return p


def _track_record(tracker_id: int, t: Track) -> dict[str, Any]:
    return {
        "tracker_id": tracker_id,
        "track_id": t.track_id,
        "label": t.label,
        "first_sequence": t.first_sequence,
        "first_seen_ms": t.first_seen_ms,
        "last_seen_ms": t.last_seen_ms,
        "last_clock_ms": t.last_clock_ms,
        "score": t.score,
        "top_score": t.top_score,
        "box": list(t.box),
        "entered": list(t.entered),
        "zones": [
            {
                "zone": z,
                "inside_frames": s.inside_frames,
                "outside_frames": s.outside_frames,
                "entered_ms": s.entered_ms,
                "loitering_reported": s.loitering_reported,
            }
            for z, s in t.zones.items()
        ],
        "identity": t.identity,
        "votes": [{"identity": name, "weight": w} for name, w in sorted(t.votes.items())],
        "text": t.text,
        "text_score": t.text_score,
        "missed_looks": t.missed_looks,
    }


def _track(r: dict[str, Any]) -> Track:
    box = r["box"]
    if len(box) != 4:
        raise StateError(f"track {r['track_id']} has a box of {len(box)} numbers")
    return Track(
        track_id=r["track_id"],
        label=r["label"],
        first_sequence=r["first_sequence"],
        first_seen_ms=r["first_seen_ms"],
        last_seen_ms=r["last_seen_ms"],
        score=r["score"],
        top_score=r["top_score"],
        box=(box[0], box[1], box[2], box[3]),
        zones={
            z["zone"]: ZoneStay(z["inside_frames"], z["outside_frames"], z["entered_ms"], z["loitering_reported"])
            for z in r["zones"]
        },
        entered=list(r["entered"]),
        last_clock_ms=r["last_clock_ms"],
        identity=r.get("identity"),
        votes={v["identity"]: v["weight"] for v in r.get("votes", ())},
        text=r.get("text"),
        text_score=r.get("text_score", 0.0),
        missed_looks=r.get("missed_looks", 0),
    )


def _crossers(zone: Any) -> list[dict[str, Any]]:
    ids = sorted(set(zone.crossing_state_history) | set(zone._confirmed_crossing_side))
    return [
        {
            "tracker_id": tid,
            "history": [bool(v) for v in zone.crossing_state_history.get(tid, ())],
            "confirmed_side": zone._confirmed_crossing_side.get(tid),
            "frames_absent": zone._tracker_frames_absent.get(tid),
        }
        for tid in ids
    ]


def _restore_crossers(zone: Any, crossers: list[dict[str, Any]]) -> None:
    for c in crossers:
        tid = c["tracker_id"]
        if c["history"]:
            zone.crossing_state_history[tid] = deque(c["history"], maxlen=zone.crossing_history_length)
        if c["confirmed_side"] is not None:
            zone._confirmed_crossing_side[tid] = c["confirmed_side"]
        if c["frames_absent"] is not None:
            zone._tracker_frames_absent[tid] = c["frames_absent"]


# -- the tracker tree ----------------------------------------------------------------------------------------------
def to_value(obj: Any, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ValueError("tracker state nests too deep")
    d = depth + 1
    if obj is None:
        return _v("none")
    if isinstance(obj, bool | np.bool_):
        return _v("bool", i=int(obj))
    if isinstance(obj, int | np.integer):
        return _v("int", i=int(obj))
    if isinstance(obj, float | np.floating):
        return _v("float", f=float(obj))
    if isinstance(obj, str):
        return _v("str", s=obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in ARRAY_DTYPES:
            raise ValueError(f"tracker array of dtype {obj.dtype.name}")
        a = np.ascontiguousarray(obj)
        return _v("ndarray", s=a.dtype.name, shape=list(a.shape), data=a.tobytes())
    if isinstance(obj, list | tuple):
        return _v("list" if isinstance(obj, list) else "tuple", items=[to_value(v, d) for v in obj])
    if isinstance(obj, dict):
        return _v("dict", items=[x for k, v in obj.items() for x in (to_value(k, d), to_value(v, d))])
    if isinstance(obj, type):
        return _v("class", s=_class_name(obj))
    if hasattr(obj, "__dict__"):
        attrs = vars(obj)
        items = [x for k in sorted(attrs) for x in (_v("str", s=k), to_value(attrs[k], d))]
        return _v("object", s=_class_name(type(obj)), items=items)
    raise ValueError(f"cannot record a {type(obj).__name__} in tracker state")


def _v(
    t: str,
    i: int = 0,
    f: float = 0.0,
    s: str = "",
    shape: list[int] | None = None,
    data: bytes = b"",
    items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {"t": t, "i": i, "f": f, "s": s, "shape": shape or [], "data": data, "items": items or []}


def from_value(v: dict[str, Any], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise StateError("tracker state nests too deep")
    t, d = v["t"], depth + 1
    if t == "none":
        return None
    if t == "bool":
        return bool(v["i"])
    if t == "int":
        return v["i"]
    if t == "float":
        return v["f"]
    if t == "str":
        return v["s"]
    if t == "ndarray":
        if v["s"] not in ARRAY_DTYPES:
            raise StateError(f"tracker array of dtype {v['s']!r}")
        shape = tuple(v["shape"])
        try:
            return np.frombuffer(v["data"], dtype=v["s"]).reshape(shape).copy()
        except ValueError as exc:
            raise StateError(f"tracker array does not match its shape {shape}: {exc}") from exc
    if t in ("list", "tuple"):
        items = [from_value(x, d) for x in v["items"]]
        return items if t == "list" else tuple(items)
    if t == "dict":
        flat = v["items"]
        if len(flat) % 2:
            raise StateError("tracker dict with an odd number of items")
        return {from_value(flat[i], d): from_value(flat[i + 1], d) for i in range(0, len(flat), 2)}
    cls = _class(v["s"])
    if t == "class":
        return cls
    obj: Any = object.__new__(cls)
    flat = v["items"]
    if len(flat) % 2:
        raise StateError("tracker object with an odd number of items")
    for i in range(0, len(flat), 2):
        name = from_value(flat[i], d)
        if not isinstance(name, str) or name.startswith("__"):
            raise StateError(f"bad attribute name {name!r} in tracker state")
        obj.__dict__[name] = from_value(flat[i + 1], d)
    return obj


def _class_name(cls: type) -> str:
    name = f"{cls.__module__}:{cls.__qualname__}"
    _class(name)  # only what can be read back is written
    return name


def _class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(TRACKER_PACKAGES) or "." in qualname or module not in sys.modules:
        raise StateError(f"class {name!r} is not one a tracker state may hold")
    cls = getattr(sys.modules[module], qualname, None)
    if not isinstance(cls, type) or cls.__module__ != module:
        raise StateError(f"class {name!r} is not one a tracker state may hold")
    return cls


__all__ = ["StateCodec", "StateError", "from_value", "restore", "snapshot", "to_value"]
