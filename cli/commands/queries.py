"""`events`, `tracks` and `zones`: read the sink's store and print JSON lines."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from cli.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    # --db before or after the query's name
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument(
        "--db", default=argparse.SUPPRESS, help="SQLite database path (default: sink.store settings)"
    )

    def queries(name: str, help_text: str, dest: str) -> Any:
        q = command(sub, name, run_query, help_text)
        q.add_argument("--db", help="SQLite database path (default: sink.store settings)")
        q_sub = q.add_subparsers(dest=dest, required=True, metavar="QUERY")
        q_sub.add_parser = functools.partial(q_sub.add_parser, parents=[common, db_option])  # type: ignore[method-assign]
        return q_sub

    e_sub = queries("events", "query stored detection events (the store in the sink settings)", "events_command")
    e_list = e_sub.add_parser("list", help="events, newest first, one JSON object per line")
    e_counts = e_sub.add_parser("counts", help="detections per label per time bucket")
    e_counts.add_argument("--bucket", default="1m", help="bucket width: 30s, 5m, 1h, 1d (default 1m)")
    for q in (e_list, e_counts):
        _filters(q)
    _page(e_list)
    e_get = e_sub.add_parser("get", help="one event with its detections")
    e_get.add_argument("event_id")

    tr_sub = queries("tracks", "query stored tracks (what the analytics role followed)", "tracks_command")
    tr_list = tr_sub.add_parser("list", help="tracks, newest first, one JSON object per line")
    _filters(tr_list)
    tr_list.add_argument("--zone", help="only tracks that entered this zone")
    _page(tr_list)
    tr_get = tr_sub.add_parser("get", help="one track with its events (zones, lines, lifecycle)")
    tr_get.add_argument("track_id")

    z_sub = queries("zones", "query zone and line counts (entries, exits, crossings, peak occupancy)", "zones_command")
    z_counts = z_sub.add_parser("counts", help="per time bucket, zone or line, and label")
    _filters(z_counts, score=False)
    z_counts.add_argument("--zone", help="only this zone or line")
    z_counts.add_argument("--bucket", default="1h", help="bucket width: 30s, 5m, 1h, 1d (default 1h)")


def _filters(q: argparse.ArgumentParser, score: bool = True) -> None:
    q.add_argument("--camera", help="only this camera")
    q.add_argument("--label", help="only this label")
    q.add_argument("--since", help="from this time (ISO-8601 or epoch ms)")
    q.add_argument("--until", help="before this time (ISO-8601 or epoch ms)")
    if score:
        q.add_argument("--min-score", help="only scores of at least this")
        q.add_argument("--identity", help="only this recognised name (a person, a known plate's name, unknown)")
        q.add_argument("--text", help="only this plate, exactly as stored (e.g. AB12CDE)")


def _page(q: argparse.ArgumentParser) -> None:
    q.add_argument("--limit", default="100", help="at most this many (1-1000, default 100)")
    q.add_argument("--cursor", help="continue after a previous page (printed on stderr)")


def run_query(args: argparse.Namespace, settings: Any) -> int:
    from sink.query import EventFilter, QueryError, decode_cursor, parse_duration_ms, parse_limit
    from sink.stores import open_store

    cmd = args.command
    query = getattr(args, f"{cmd}_command")
    s = settings.sink.store
    if s.type == "sqlite" and not Path(s.path).is_file():  # reading must not create an empty database
        print(
            f"visionstream {cmd}: no database at {s.path} (the sink creates it; check --db or sink.store.path)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    store = open_store(s)
    try:
        if query == "get":
            wanted = args.event_id if cmd == "events" else args.track_id
            found = store.get_event(wanted) if cmd == "events" else store.get_track(wanted)
            if found is None:
                print(f"visionstream {cmd}: no {cmd[:-1]} {wanted!r}", file=sys.stderr)
                return EXIT_FAILED
            print(json.dumps(found))
            return EXIT_OK
        names = ("camera", "label", "since", "until", "min_score", "identity", "text")
        params = {k: v for k in names if (v := getattr(args, k, None)) is not None}
        cursor = None
        try:
            f = EventFilter.from_params(params)
            if cmd == "zones":
                rows = store.zone_counts(f, parse_duration_ms("bucket", args.bucket), args.zone)
            elif query == "counts":
                rows = store.label_counts(f, parse_duration_ms("bucket", args.bucket))
            elif cmd == "tracks":
                rows, cursor = store.list_tracks(f, parse_limit(args.limit), decode_cursor(args.cursor), args.zone)
            else:
                rows, cursor = store.list_events(f, parse_limit(args.limit), decode_cursor(args.cursor))
        except QueryError as exc:
            print(f"visionstream {cmd}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        for row in rows:
            print(json.dumps(row))
        if cursor:
            print(f"more: --cursor {cursor}", file=sys.stderr)
        return EXIT_OK
    finally:
        store.close()
