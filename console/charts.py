"""The counts the console draws: per zone or line, summed over labels and buckets, scaled for its SVG bar charts."""

from __future__ import annotations

from typing import Any

COUNT_KEYS = ("entries", "exits", "crossings_in", "crossings_out")


def add(into: dict[str, int], row: dict[str, Any]) -> None:
    for k in COUNT_KEYS:
        into[k] = into.get(k, 0) + int(row.get(k) or 0)
    into["peak_occupancy"] = max(into.get("peak_occupancy", 0), int(row.get("peak_occupancy") or 0))


def totals(counts: Any) -> dict[str, dict[str, int]]:
    """Per zone or line over the counts' buckets: entries, exits, crossings in and out, peak occupancy."""
    out: dict[str, dict[str, int]] = {}
    for row in (counts or {}).get("counts", []):
        add(out.setdefault(str(row.get("place")), {}), row)
    return out


def charts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per camera and zone or line, its buckets in time order (labels summed), scaled for the SVG bar charts."""
    merged: dict[tuple[str, str], dict[int, dict[str, int]]] = {}
    for row in rows:
        buckets = merged.setdefault((str(row.get("camera_id")), str(row.get("place"))), {})
        add(buckets.setdefault(int(row["bucket_start_ms"]), {}), row)
    out = []
    for (camera, place), buckets in sorted(merged.items()):
        series = [{"start_ms": k, **v} for k, v in sorted(buckets.items())]
        top = max([1] + [max(v.values()) for v in buckets.values()])
        out.append({"camera": camera, "place": place, "series": series, "top": top})
    return out
