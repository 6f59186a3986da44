"""`visionstream demo`: a sample clip through ingest -> Kafka -> inference -> Kafka -> analytics and sink, then a
report of the events, the tracks, the line crossings and the zone's peak occupancy."""

from __future__ import annotations

import logging
import secrets
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analytics.settings import AnalyticsSettings
from analytics.worker import AnalyticsWorker
from cli.broker import LocalKafka
from cli.config import AppSettings
from cli.console import BackgroundConsole
from cli.faces import make_enrolment
from evaluation.sample_video import SampleClip, iou, make_sample_clip
from inference.settings import InferenceSettings
from inference.worker import InferenceWorker
from ingest.worker import IngestWorker
from sink.http import SinkHttpServer
from sink.worker import SinkWorker
from visionstream.gallery import publish
from visionstream.http import WorkerHttpServer
from visionstream.kafka import make_admin
from visionstream.topics import ensure_topics

log = logging.getLogger(__name__)

# The sample clip's face goes from the left edge to the right one: it crosses this line once (`in`), and stays a
# while in the left half.
DEMO_LINE = {"name": "middle", "start": [0.5, 0.0], "end": [0.5, 1.0]}
DEMO_ZONE = {"name": "left", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 2}
# Who the sample clip's face is: enrolled in the demo's own face gallery from scikit-image's astronaut photo.
DEMO_PERSON = "Eileen Collins"


@dataclass(frozen=True)
class DemoOptions:
    frames: int = 40
    video: Path | None = None
    workdir: Path = Path(".visionstream")
    keep_broker: bool = False
    keep_topics: bool = False
    timeout_s: float = 300.0
    progress: bool = True
    serve: bool = False  # after the report, keep the console (and the sink's API, topics, broker) up until Ctrl-C
    console_port: int | None = None  # None: console.port if free, else any free port


class _Thread(threading.Thread):
    """Runs a worker; keeps its exception for the main thread to report."""

    def __init__(self, name: str, target: Any, *args: Any) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._args = args
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn(*self._args)
        except BaseException as exc:  # reported by the demo, not swallowed
            self.error = exc
            log.exception("%s failed", self.name)


def demo_settings(
    base: AppSettings, run_id: str, db: Path, source: str, fps: float | None, identify: bool = False
) -> AppSettings:
    """Per-run topics, groups and camera, so a demo never reads what an earlier one left behind."""
    return base.model_copy(
        update={
            "topics": base.topics.model_copy(
                update={
                    "frames": f"demo-{run_id}.frames",
                    "detections": f"demo-{run_id}.detections",
                    "frames_dlq": f"demo-{run_id}.frames.dlq",
                    "detections_dlq": f"demo-{run_id}.detections.dlq",
                    "tracks": f"demo-{run_id}.tracks",
                    "analytics_state": f"demo-{run_id}.analytics.state",
                    "faces": f"demo-{run_id}.faces",
                    "frames_partitions": 2,
                    "detections_partitions": 2,
                }
            ),
            "ingest": base.ingest.model_copy(
                # Each demo is a new camera reading a new clip: no progress worth keeping.
                update={
                    "camera_id": f"demo-{run_id}",
                    "source": source,
                    "fps": fps,
                    "realtime": True,
                    "state_dir": None,
                }
            ),
            "inference": InferenceSettings.model_validate(
                {
                    **base.inference.model_dump(),
                    "group_id": f"demo-{run_id}-inference",
                    "chain": [{"type": "face-identity"}] if identify else base.inference.model_dump()["chain"],
                }
            ),
            "analytics": AnalyticsSettings.model_validate(
                {
                    **base.analytics.model_dump(),
                    "group_id": f"demo-{run_id}-analytics",
                    "cameras": [{"id": f"demo-{run_id}", "lines": [DEMO_LINE], "zones": [DEMO_ZONE]}],
                    "zones_file": None,
                    "stream_idle_s": 5.0,  # the clip's end: its tracks end this long after its last frame
                }
            ),
            "sink": base.sink.model_copy(
                update={
                    "group_id": f"demo-{run_id}-sink",
                    "store": base.sink.store.model_copy(update={"type": "sqlite", "path": str(db)}),
                }
            ),
        }
    )


def run_demo(
    base: AppSettings,
    opts: DemoOptions,
    bootstrap_given: bool,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    serving: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the demo; its report goes to `on_report` as soon as it is made. With opts.serve, the console stays up
    after it until `serving` is set (the CLI sets it on SIGINT or SIGTERM)."""
    opts.workdir.mkdir(parents=True, exist_ok=True)
    broker = None
    if not bootstrap_given:
        broker = LocalKafka()
        _say(opts, f"starting the local Kafka broker on {broker.bootstrap} (first run fetches its jars) ...")
        started = broker.start()
        _say(opts, f"Kafka {'started' if started else 'already running'} at {broker.bootstrap}")
        base = base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap})})
    else:
        started = False
    try:
        return _run(base, opts, on_report or (lambda report: None), serving or threading.Event())
    finally:
        if broker is not None and started and not opts.keep_broker:
            _say(opts, "stopping the local Kafka broker (keep it with --keep-broker)")
            broker.stop()


def _run(
    base: AppSettings, opts: DemoOptions, on_report: Callable[[dict[str, Any]], None], serving: threading.Event
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    db = opts.workdir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clip: SampleClip | None = None
    fps: float | None
    if opts.video is None:
        clip = make_sample_clip(opts.workdir / "sample.mp4", frames=opts.frames)
        source, fps = str(clip.path), clip.fps
        _say(
            opts,
            f"made a {opts.frames}-frame sample clip at {clip.path} (astronaut photo moving over a coffee cup)",
        )
    else:
        source, fps = str(opts.video), base.ingest.fps
    settings = demo_settings(base, run_id, db, source, fps, identify=clip is not None)
    token_file = opts.workdir / "api-token"
    token = _demo_token(token_file)
    settings = settings.model_copy(update={"console": settings.console.model_copy(update={
        "addr": "127.0.0.1",
        "api_token_file": str(token_file),
        "sink_url": f"http://127.0.0.1:{settings.sink.metrics_port}",
        "roles": {"sink": f"http://127.0.0.1:{settings.sink.metrics_port}"},
        "groups": [settings.inference.group_id, settings.analytics.group_id, settings.sink.group_id],
    })})  # fmt: skip
    if clip is not None:
        _say(opts, f"enrolling {DEMO_PERSON} in the demo's face gallery from the astronaut photo ...")
        _enroll_demo_person(settings, opts.workdir)

    stop_workers = threading.Event()
    stop_ingest = threading.Event()
    sink = SinkWorker(settings.sink, settings.kafka, settings.topics)
    infer = InferenceWorker(settings.inference, settings.kafka, settings.topics)
    analytics = AnalyticsWorker(settings.analytics, settings.kafka, settings.topics)
    ingest = IngestWorker(settings.ingest, settings.kafka, settings.topics)
    # The console's view of the other roles: ingest's probe (the camera's state and capture rate), inference's, and
    # analytics' zones and lines, each on a port of its own (any free one; the sink's port has the metrics of all).
    # Once the clip is through, every probe says the role finished its work (the health page shows that, not a
    # failure): the workers have stopped, the sink's API and the console serve on.
    finished = threading.Event()

    def phase(detail: Callable[[], dict[str, Any]] = dict) -> Callable[[], dict[str, Any]]:
        return lambda: {**detail(), "state": "finished" if finished.is_set() else "running"}

    def running(ready: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: ready() and not finished.is_set()

    probes = [
        WorkerHttpServer("ingest", "127.0.0.1", 0, running(ingest.is_ready), status=phase(ingest.status)).start(),
        WorkerHttpServer("inference", "127.0.0.1", 0, running(infer.is_ready), status=phase()).start(),
        WorkerHttpServer(
            "analytics", "127.0.0.1", 0, running(analytics.is_ready), status=phase(), routes=analytics.routes
        ).start(),
    ]
    # One process, one registry: the sink's port shows every role's metrics, plus the events API.
    http = SinkHttpServer(
        settings.sink.store, "127.0.0.1", settings.sink.metrics_port, sink.ready.is_set, status=phase(), token=token
    ).start()
    roles = {p.role: f"http://127.0.0.1:{p.port}" for p in probes}
    settings = settings.model_copy(update={"console": settings.console.model_copy(
        update={"roles": {**roles, **settings.console.roles}})})  # fmt: skip
    threads = [
        _Thread("sink", sink.run, stop_workers),
        _Thread("inference", infer.run, stop_workers),
        _Thread("analytics", analytics.run, stop_workers),
    ]
    for t in threads:
        t.start()
    _say(opts, "loading the model and joining the consumer groups ...")
    _wait_ready([(sink.ready, threads[0]), (infer.ready, threads[1]), (analytics.ready, threads[2])], opts.timeout_s)
    console = BackgroundConsole(settings, _console_port(settings, opts))
    try:
        console_url = console.start()
        _say(opts, f"console: {console_url} (log in with the token in {token_file})")
        ingest_thread = _Thread("ingest", ingest.run, stop_ingest)
        ingest_thread.start()
        threads.append(ingest_thread)
        started = time.monotonic()
        while True:
            _raise_failures(threads)
            done_ingest = not ingest_thread.is_alive()
            s_in, s_inf, s_sink = ingest.stats, infer.stats, sink.stats
            _progress(opts, s_in.published, s_inf.consumed, s_inf.events, s_sink.stored + s_sink.duplicates)
            accounted = s_inf.events + s_inf.dead_lettered + s_inf.stale
            if (
                done_ingest
                and accounted >= s_in.published
                and s_sink.stored + s_sink.duplicates >= s_inf.events
                and _tracks_settled(analytics, s_inf.events, s_sink.track_events)
            ):
                break
            if time.monotonic() - started > opts.timeout_s:
                raise TimeoutError(f"the demo did not finish within {opts.timeout_s:.0f}s")
            time.sleep(0.25)
        stop_ingest.set()
        stop_workers.set()
        for t in threads:
            t.join(timeout=60)
        if opts.progress:
            print(file=sys.stderr)
        _raise_failures(threads)
        finished.set()
        report = _report(settings, db, ingest.stats.published, clip)
        report["console"] = {"url": console_url, "token_file": str(token_file), "serving": opts.serve}
        on_report(report)
        if opts.serve:
            _say(opts, f"the console stays up at {console_url} until Ctrl-C")
            serving.wait()
    finally:
        stop_ingest.set()
        stop_workers.set()
        for t in threads:
            t.join(timeout=60)
        console.stop()
        http.stop()
        for probe in probes:
            probe.stop()
    if not opts.keep_topics:
        _delete_topics(settings)
    return report


def _demo_token(path: Path) -> str:
    """The demo's API token (the console's login and the sink API's bearer token): kept across runs, made once."""
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= 16:
            return token
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return token


def _console_port(settings: AppSettings, opts: DemoOptions) -> int:
    if opts.console_port is not None:
        return opts.console_port
    with socket.socket() as probe:  # the usual port if it is free, else any free one (the URL is printed)
        try:
            probe.bind((settings.console.addr, settings.console.port))
        except OSError:
            return 0
    return settings.console.port


def _enroll_demo_person(settings: AppSettings, workdir: Path) -> None:
    import cv2
    from skimage import data

    photo = workdir / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    ensure_topics(settings.kafka, settings.topics, [settings.topics.faces])
    publish(settings.kafka, settings.topics, DEMO_PERSON, make_enrolment(settings, DEMO_PERSON, [photo]))


def _tracks_settled(analytics: AnalyticsWorker, events: int, stored_track_events: int) -> bool:
    """Analytics has seen every event, ended every track (its camera went quiet), and the sink stored it all."""
    handler = analytics.handler
    if handler is None:
        return False
    s = analytics.stats
    live = sum(len(p.tracks) for p in list(handler.cameras.values()))
    return s.consumed + s.repeats >= events and live == 0 and stored_track_events >= s.track_events


def _report(settings: AppSettings, db: Path, published: int, clip: SampleClip | None) -> dict[str, Any]:
    conn = sqlite3.connect(str(db))
    try:
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        detections = conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
        lat = sorted(r[0] for r in conn.execute("SELECT persisted_ts_ms - capture_ts_ms FROM events"))
        per_label = dict(conn.execute("SELECT label, COUNT(*) FROM detections GROUP BY label").fetchall())
        report: dict[str, Any] = {
            "frames_published": published,
            "events_persisted": events,
            "detections_persisted": detections,
            "detections_by_label": per_label,
            "latency_ms": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99)},
            "database": str(db.resolve()),
            "metrics_url": f"http://127.0.0.1:{settings.sink.metrics_port}/metrics"
            if settings.sink.metrics_port
            else None,
            "topics": {"frames": settings.topics.frames, "detections": settings.topics.detections},
        }
        report.update(_track_report(conn))
        if clip is not None:
            report["face_found_ratio"] = _face_found_ratio(conn, clip)
            named = conn.execute(
                "SELECT COUNT(DISTINCT e.frame_sequence) FROM events e JOIN detections d ON d.event_id = e.event_id "
                "WHERE d.identity = ?",
                (DEMO_PERSON,),
            ).fetchone()[0]
            report["face_identified_ratio"] = round(named / max(1, len(clip.faces_xyxy_norm)), 3)
            report["person"] = DEMO_PERSON
        return report
    finally:
        conn.close()


def _track_report(conn: sqlite3.Connection) -> dict[str, Any]:
    """Tracks stored, line crossings by direction, and the most objects seen at once in the zone."""
    tracks = conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
    crossings = dict(
        conn.execute("SELECT direction, COUNT(*) FROM track_events WHERE kind = 'line_cross' GROUP BY direction")
    )
    peak = conn.execute("SELECT MAX(occupancy) FROM track_events WHERE kind = 'occupancy'").fetchone()[0]
    identities = dict(
        conn.execute("SELECT COALESCE(identity, ''), COUNT(*) FROM tracks GROUP BY COALESCE(identity, '')")
    )
    return {
        "tracks_stored": tracks,
        "track_identities": identities,
        "line_crossings": {"in": crossings.get("in", 0), "out": crossings.get("out", 0)},
        "zone_peak_occupancy": peak or 0,
        "zones": {"line": DEMO_LINE["name"], "zone": DEMO_ZONE["name"]},
    }


def _face_found_ratio(conn: sqlite3.Connection, clip: SampleClip) -> float:
    """Share of frames whose stored face box overlaps the known one with IoU >= 0.5."""
    rows = conn.execute(
        "SELECT e.frame_sequence, d.x_min, d.y_min, d.x_max, d.y_max FROM events e "
        "JOIN detections d ON d.event_id = e.event_id WHERE d.label = 'face'"
    ).fetchall()
    best: dict[int, float] = {}
    for seq, *box in rows:
        if seq < len(clip.faces_xyxy_norm):
            best[seq] = max(best.get(seq, 0.0), iou(tuple(box), clip.faces_xyxy_norm[seq]))  # type: ignore[arg-type]
    return round(sum(1 for v in best.values() if v >= 0.5) / len(clip.faces_xyxy_norm), 3)


def _pct(values: list[int], p: float) -> float | None:
    if not values:
        return None
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 1)


def _wait_ready(pairs: list[tuple[threading.Event, _Thread]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for ready, thread in pairs:
        while not ready.wait(0.2):
            _raise_failures([thread])
            if not thread.is_alive():
                raise RuntimeError(f"{thread.name} stopped before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{thread.name} was not ready within {timeout_s:.0f}s")


def _raise_failures(threads: list[_Thread]) -> None:
    for t in threads:
        if t.error is not None:
            raise RuntimeError(f"the {t.name} worker failed: {t.error}") from t.error


def _delete_topics(settings: AppSettings) -> None:
    t = settings.topics
    admin = make_admin(settings.kafka, "demo")
    try:
        admin.delete_topics(
            [t.frames, t.detections, t.frames_dlq, t.detections_dlq, t.tracks, t.analytics_state, t.faces]
        )
    except Exception as exc:  # cleanup only; the run already succeeded
        log.warning("could not delete demo topics: %r", exc)
    finally:
        admin.close()


def _say(opts: DemoOptions, text: str) -> None:
    if opts.progress:
        print(f"demo: {text}", file=sys.stderr, flush=True)


def _progress(opts: DemoOptions, published: int, consumed: int, events: int, stored: int) -> None:
    if not opts.progress:
        return
    line = f"frames published {published:4d} | inferred {consumed:4d} | events {events:4d} | stored {stored:4d}"
    if sys.stderr.isatty():
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    else:
        # Non-interactive output gets a line only when a count moves.
        key = (published, consumed, events, stored)
        if getattr(_progress, "last", None) != key:
            _progress.last = key  # type: ignore[attr-defined]
            print(line, file=sys.stderr, flush=True)
