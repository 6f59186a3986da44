"""Sink throughput: N events with 5 detections each, from the local broker into SQLite and into PostgreSQL.

Per backend: events/s from the first stored batch to the last (that batch's events not counted), and the share of that time spent decoding,
writing and committing. Also apache `avro` vs `fastavro` decode on the same messages (same wire format).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

from bench.common import broker_for_run, run_settings
from devkit.events import encoded, make_events
from devkit.ports import free_port
from devkit.postgres import PrivatePostgres
from devkit.topics import produce
from schemas import EventCodec, load_schema
from sink.settings import StoreSettings
from sink.worker import SinkWorker
from visionstream.loop import freeze_startup_heap
from visionstream.metrics import COMMIT_SECONDS
from visionstream.topics import ensure_topics


def _commit_seconds() -> float:
    return sum(
        s.value
        for m in COMMIT_SECONDS.collect()
        for s in m.samples
        if s.name.endswith("_sum") and s.labels.get("role") == "sink"
    )


def _alive(thread: threading.Thread) -> None:
    if not thread.is_alive():
        raise RuntimeError("the sink worker stopped during the benchmark (see its log above)")


def _one_backend(settings: Any, store: dict[str, Any], total: int, writer_process: bool = True) -> dict[str, float]:
    sink_s = settings.sink.model_copy(
        update={
            "group_id": f"bench-{uuid.uuid4().hex[:8]}",
            "store": StoreSettings(**store),
            "writer_process": writer_process,
        }
    )
    worker = SinkWorker(sink_s, settings.kafka, settings.topics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    freeze_startup_heap()  # as `visionstream sink` does before its loop
    commit_before = _commit_seconds()
    thread.start()
    while (first := worker.stats.consumed) == 0:
        _alive(thread)
        time.sleep(0.001)
    # The clock starts at the first stored batch, so only the events stored after it count
    started = time.perf_counter()
    while worker.stats.consumed < total:
        _alive(thread)
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(60)
    stats = worker.stats
    commit_s = _commit_seconds() - commit_before
    return {
        "events_per_s": round((total - first) / elapsed, 1),
        "stored": stats.stored,
        "share_decode": round(stats.decode_s / elapsed, 3),
        "share_write": round(stats.write_s / elapsed, 3),
        "share_commit": round(commit_s / elapsed, 3),
    }


def _decode_comparison(messages: list[bytes]) -> dict[str, float]:
    """apache avro against fastavro (what schemas/codec.py uses) on the same message bodies."""
    import avro.io
    import avro.schema

    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(load_schema("detection_event"))))
    started = time.perf_counter()
    for m in messages:
        reader.read(avro.io.BinaryDecoder(io.BytesIO(m[10:])))
    avro_s = time.perf_counter() - started
    codec = EventCodec()
    started = time.perf_counter()
    for m in messages:
        codec.decode(m)
    fast_s = time.perf_counter() - started
    return {
        "avro_decode_per_s": round(len(messages) / avro_s, 1),
        "fastavro_decode_per_s": round(len(messages) / fast_s, 1),
        "fastavro_vs_avro": round(avro_s / fast_s, 2),
    }


def run(total: int) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, _):
        pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="vs-bench-pg-")), free_port())  # postgres must reach it
        pg.init()
        pg.start()
        try:
            settings = run_settings(bootstrap)
            ensure_topics(settings.kafka, settings.topics, [settings.topics.detections, settings.topics.detections_dlq])
            messages = encoded(make_events(total, cameras=8, per_event=5))
            produce(bootstrap, settings.topics.detections, messages)
            # each backend with the store written from a process of its own (the default) and from the sink's
            # process (sink.writer_process false), alternated
            sqlite_one = _one_backend(settings, {"type": "sqlite", "path": str(tmp / "one.db")}, total, False)
            sqlite = _one_backend(settings, {"type": "sqlite", "path": str(tmp / "bench.db")}, total)
            postgres_one = _one_backend(settings, {"type": "postgres", "dsn": pg.new_database()}, total, False)
            postgres = _one_backend(settings, {"type": "postgres", "dsn": pg.new_database()}, total)
            result: dict[str, Any] = {
                "events": total,
                "detections_per_event": 5,
                "sqlite_events_per_s": sqlite["events_per_s"],
                "postgres_events_per_s": postgres["events_per_s"],
                "sqlite_one_process_events_per_s": sqlite_one["events_per_s"],
                "postgres_one_process_events_per_s": postgres_one["events_per_s"],
                "sqlite_writer_process_vs_one": round(sqlite["events_per_s"] / sqlite_one["events_per_s"], 2),
                "postgres_writer_process_vs_one": round(postgres["events_per_s"] / postgres_one["events_per_s"], 2),
                "sqlite": sqlite,
                "postgres": postgres,
            }
            result.update(_decode_comparison([v for _, v in messages]))
            return result
        finally:
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)


def _one_run(tree: Path, events: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "sink", "--events", str(events), "--json"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"`bench sink` in {tree} exited {out.returncode}: {out.stderr[-2000:]}")
    return cast(dict[str, Any], json.loads(out.stdout.strip().splitlines()[-1]))


def against(rev: str, runs: int, events: int) -> dict[str, Any]:
    """This tree's `bench sink` and REV's (checked out in a temporary git worktree, run with this interpreter),
    alternated `runs` times on one machine: each run starts its own broker and PostgreSQL, as a lone run does."""
    here = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=here, capture_output=True, text=True, check=True)
    other = Path(tempfile.mkdtemp(prefix="vs-bench-against-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(other), rev], cwd=here, capture_output=True, check=True)
    found: dict[str, list[dict[str, Any]]] = {"this": [], "rev": []}
    try:
        for _ in range(runs):
            found["rev"].append(_one_run(other, events))
            found["this"].append(_one_run(here, events))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=here, capture_output=True, check=False)
        shutil.rmtree(other.parent, ignore_errors=True)
    result: dict[str, Any] = {"rev": commit.stdout.strip(), "runs": runs, "events": events}
    for backend in ("sqlite", "postgres"):
        key = f"{backend}_events_per_s"
        this, then = ([r[key] for r in found[side]] for side in ("this", "rev"))
        result[backend] = {"this": this, "rev": then}
        result[f"{backend}_this_vs_rev"] = round(statistics.median(this) / statistics.median(then), 2)
    return result
