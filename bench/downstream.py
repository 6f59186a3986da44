"""What downstream interop costs: the sink reading registry-framed events against single-object ones, and the JSON
mirror's throughput.

One run, one local broker and one local schema registry (Apicurio, `visionstream registry start`): the same N
events (5 detections each) are written to two topics, single-object and registry-framed. The SQLite sink reads
each topic in turn, alternating, `rounds` times each (the order flips each round), and reports events/s; then
`visionstream export-json` mirrors the single-object topic, and its records/s and records per CPU second are
measured (this process: the mirror runs as a thread here, nothing else does meanwhile). Last, the whole pipeline
(bench pipeline's: 4 file cameras, one `visionstream infer`, the SQLite sink) with framing off and on, alternated.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from typing import Any

from bench.common import broker_for_run, cpu_seconds, run_settings
from bench.pipeline import run_pipeline
from bench.sink import _one_backend
from devkit.events import make_events
from devkit.topics import produce
from evaluation.sample_video import make_sample_clip
from schemas import EventCodec
from schemas.registry import SchemaRegistry
from sink.json_mirror import JsonMirror, JsonMirrorSettings
from visionstream.topics import ensure_topics


def _mirror_rate(settings: Any, total: int) -> dict[str, float]:
    mirror = JsonMirror(
        JsonMirrorSettings(group_id=f"bench-{uuid.uuid4().hex[:8]}-mirror", topics=["detections"]),
        settings.kafka,
        settings.topics,
    )
    stop = threading.Event()
    thread = threading.Thread(target=mirror.run, args=(stop,), daemon=True)
    thread.start()
    while mirror.stats.mirrored == 0:
        if not thread.is_alive():
            raise RuntimeError("the JSON mirror stopped")
        time.sleep(0.001)
    started, cpu0 = time.perf_counter(), cpu_seconds()
    while mirror.stats.mirrored < total:
        if not thread.is_alive():
            raise RuntimeError("the JSON mirror stopped")
        time.sleep(0.005)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    stop.set()
    thread.join(60)
    return {"records_per_s": round(total / elapsed, 1), "records_per_cpu_s": round(total / max(cpu, 1e-9), 1)}


def run(total: int, rounds: int = 2) -> dict[str, Any]:
    from cli.broker import default_home
    from cli.registry import LocalRegistry
    from devkit.ports import free_port

    registry = LocalRegistry(port=free_port(), home=default_home())
    registry.start()
    try:
        with broker_for_run() as (bootstrap, tmp, _):
            base = run_settings(bootstrap)
            reg = base.kafka.schema_registry.model_copy(update={"url": registry.url})
            kafka = base.kafka.model_copy(update={"schema_registry": reg})
            single = base.model_copy(update={"kafka": kafka})
            framed_topics = base.topics.model_copy(update={"detections": base.topics.detections + "-registry"})
            framed = single.model_copy(update={"topics": framed_topics})
            events = make_events(total, cameras=8, per_event=5)
            writer = EventCodec().use_registry(
                SchemaRegistry(reg.model_copy(update={"framing": "registry"})), write_topic=framed_topics.detections
            )
            plain = EventCodec()
            for s, codec in ((single, plain), (framed, writer)):
                ensure_topics(s.kafka, s.topics, [s.topics.detections, s.topics.detections_dlq])
                produce(bootstrap, s.topics.detections, [(e.camera_id.encode(), codec.encode(e)) for e in events])
            rates: dict[str, list[float]] = {"single_object": [], "registry": []}
            for r in range(rounds):
                order = [("single_object", single), ("registry", framed)]
                for name, s in order if r % 2 == 0 else order[::-1]:
                    db = tmp / f"{name}-{r}.db"
                    rates[name].append(_one_backend(s, {"type": "sqlite", "path": str(db)}, total)["events_per_s"])
            mirror = _mirror_rate(single, total)
            # the whole pipeline (ingest -> inference -> sink, the default face model), framing off and on
            clip = make_sample_clip(tmp / "clip.mp4", frames=40).path
            pipeline: dict[str, list[float]] = {"single_object": [], "registry": []}
            for r in range(rounds):
                urls: list[tuple[str, str | None]] = [("single_object", None), ("registry", registry.url)]
                for name, url in urls if r % 2 == 0 else urls[::-1]:
                    pipeline[name].append(round(run_pipeline(bootstrap, tmp, clip, 1, registry_url=url).fps, 2))
            single_rate, framed_rate = statistics.median(rates["single_object"]), statistics.median(rates["registry"])
            return {
                "events": total,
                "rounds": rounds,
                "sqlite_events_per_s_single_object": rates["single_object"],
                "sqlite_events_per_s_registry": rates["registry"],
                "registry_vs_single_object": round(framed_rate / single_rate, 3),
                "pipeline_fps_single_object": pipeline["single_object"],
                "pipeline_fps_registry": pipeline["registry"],
                "pipeline_registry_vs_single_object": round(
                    statistics.median(pipeline["registry"]) / statistics.median(pipeline["single_object"]), 3
                ),
                "json_mirror_records_per_s": mirror["records_per_s"],
                "json_mirror_records_per_cpu_s": mirror["records_per_cpu_s"],
            }
    finally:
        registry.stop()
