"""`python -m bench sink [--json]` (more benchmarks register here as they are written)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    sub = p.add_subparsers(dest="name", required=True)
    s = sub.add_parser("sink", help="sink throughput into SQLite and PostgreSQL from the local broker")
    s.add_argument("--events", type=int, default=20000, help="events to store per backend (5 detections each)")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.name == "sink":
        from bench.sink import run

        result = run(args.events)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
