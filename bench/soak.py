"""A soak: the whole platform for N minutes, each role a real `visionstream` process, sampled every 10 s.

Roles: ingest with two cameras (a live RTSP camera, GStreamer's server looping the sample clip's frames at 5 fps,
and the sample clip as a looping file in real time at 5 fps), inference with the default face detector and the
face-identity chain, analytics with a line and a zone per camera, the SQLite sink, and the console with one live
viewer (its /live event stream, and each new frame's image, as the browser fetches them). All on one local broker.

Every `interval_s` each role's RSS, threads and open file descriptors (from /proc), the consumer lag of the
inference, analytics and sink groups, and the events stored so far are sampled. The report gives, per role and
figure, the least-squares slope over the last two thirds of the run (per hour), and the totals: frames published
(the frames topic's end offsets), events stored, live frames inference skipped on purpose (newest first: not
losses), lost (published minus stored minus skipped), and dead letters (the DLQs' end offsets). With
`--plot FILE` it draws RSS, threads, fds and lag over time (matplotlib).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import broker_for_run
from bench.live import write_images
from devkit.cameras import RtspServer
from devkit.ports import free_port
from devkit.procfs import children
from devkit.topics import fresh_topics, topics_env
from evaluation.sample_video import make_sample_clip

ROLES = ("ingest", "infer", "analyze", "sink", "console")
GROUPS = {"infer": "inference", "analyze": "analytics", "sink": "sink"}
FPS = 5


def _proc_figures(pid: int) -> dict[str, float]:
    """RSS, threads and open fds of a role: its process and its children together."""
    total = {"rss_mb": 0.0, "threads": 0.0, "fds": 0.0}
    for p in [pid, *children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            fds = len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            if p == pid:
                raise
            continue  # a child that ended meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        total["rss_mb"] += int(fields["VmRSS"].split()[0]) / 1024
        total["threads"] += int(fields["Threads"])
        total["fds"] += fds
    return total


def _slope_per_hour(t_s: list[float], values: list[float]) -> float:
    """Least-squares slope over the last two thirds of the samples, per hour."""
    start = len(t_s) // 3
    t, v = np.array(t_s[start:]), np.array(values[start:])
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0] * 3600)


class Platform:
    def __init__(self, bootstrap: str, tmp: Path, clip: Path, rtsp_url: str) -> None:
        run = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.db = tmp / "soak.db"
        self.bootstrap = bootstrap
        self.topics = fresh_topics(f"soak-{run}")
        self.groups = {role: f"soak-{run}-{section}" for role, section in GROUPS.items()}
        cams = [
            {"id": "live", "url": rtsp_url, "open_timeout_s": 10, "read_timeout_s": 5},
            {"id": "file", "url": str(clip), "loop": True, "realtime": True},
        ]
        (tmp / "cameras.yaml").write_text(json.dumps({"cameras": cams}))
        place = {
            "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
            "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
            "expected_fps": FPS,
        }
        (tmp / "zones.yaml").write_text(json.dumps({"cameras": [{"id": c["id"], **place} for c in cams]}))
        self.ports = {role: free_port() for role in ROLES}
        self.env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            **topics_env(self.topics),
            "VISIONSTREAM_INGEST__CAMERAS_FILE": str(tmp / "cameras.yaml"),
            "VISIONSTREAM_INFERENCE__GROUP_ID": self.groups["infer"],
            "VISIONSTREAM_INFERENCE__CHAIN": json.dumps([{"type": "face-identity"}]),
            "VISIONSTREAM_ANALYTICS__GROUP_ID": self.groups["analyze"],
            "VISIONSTREAM_ANALYTICS__ZONES_FILE": str(tmp / "zones.yaml"),
            "VISIONSTREAM_SINK__GROUP_ID": self.groups["sink"],
            "VISIONSTREAM_SINK__STORE__PATH": str(self.db),
            "VISIONSTREAM_CONSOLE__PORT": str(self.ports["console"]),
            "VISIONSTREAM_CONSOLE__ADDR": "127.0.0.1",
        }
        for role, section in (("ingest", "INGEST"), ("infer", "INFERENCE"), ("analyze", "ANALYTICS"), ("sink", "SINK")):
            self.env[f"VISIONSTREAM_{section}__METRICS_PORT"] = str(self.ports[role])
            self.env[f"VISIONSTREAM_{section}__METRICS_ADDR"] = "127.0.0.1"
        self.env["VISIONSTREAM_CONSOLE__SINK_URL"] = f"http://127.0.0.1:{self.ports['sink']}"
        self.env["VISIONSTREAM_CONSOLE__ROLES"] = json.dumps(
            {GROUPS.get(r, r): f"http://127.0.0.1:{self.ports[r]}" for r in ("ingest", "infer", "analyze", "sink")}
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        from visionstream.settings import KafkaSettings, TopicSettings
        from visionstream.topics import ensure_topics

        t = self.topics
        topics = TopicSettings(
            frames=t["frames"], detections=t["detections"], frames_dlq=t["frames.dlq"],
            detections_dlq=t["detections.dlq"], tracks=t["tracks"], analytics_state=t["analytics.state"],
            faces=t["faces"],
        )  # fmt: skip
        ensure_topics(KafkaSettings(bootstrap_servers=self.bootstrap), topics)
        for role in ("sink", "analyze", "infer", "console", "ingest"):
            log = open(self.tmp / f"{role}.log", "wb")  # noqa: SIM115 (the child writes it until it ends)
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", role], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while not all(self.ready(r) for r in ROLES):
            dead = [r for r, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"roles not ready (dead: {dead}); logs in {self.tmp}")
            time.sleep(1)

    def ready(self, role: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[role]}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for role in ("ingest", "console", "infer", "analyze", "sink"):
            p = self.procs.get(role)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                codes[role] = p.wait(90)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[role] = None
        return codes

    def stored(self) -> int:
        if not self.db.exists():
            return 0
        try:
            with sqlite3.connect(self.db, timeout=5) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _lags(bootstrap: str, groups: dict[str, str]) -> dict[str, int]:
    """Each group's records not yet committed, summed over its topics (the console's health page's figure)."""
    from console.health import consumer_lag
    from visionstream.settings import KafkaSettings

    rows = consumer_lag(KafkaSettings(bootstrap_servers=bootstrap), list(groups.values()))
    return {role: int(sum(r["lag"] or 0 for r in rows if r["group"] == group)) for role, group in groups.items()}


def _metric_sum(port: int, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _end_offsets(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return int(sum(consumer.end_offsets([TopicPartition(topic, p) for p in parts]).values()))
    finally:
        consumer.close()


class Viewer(threading.Thread):
    """One operator with the live page open: the console's /live event stream, and each new frame's image."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.images = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.base}/live", timeout=30) as stream:
                    for raw in stream:
                        if self.stop.is_set():
                            return
                        line = raw.decode().strip()
                        if line.startswith("data: "):
                            self._images(json.loads(line[6:])["cameras"])
            except Exception:  # noqa: BLE001 (the console restarting or slow: count it and reconnect)
                self.errors += 1
                self.stop.wait(1.0)

    def _images(self, cameras: list[dict[str, Any]]) -> None:
        for c in cameras:
            f = c.get("frame")
            if not f:
                continue
            url = (f"{self.base}/frame/{f['partition']}/{f['offset']}?camera={c['camera_id']}"
                   f"&sequence={c['sequence']}&ts={c['capture_ts_ms']}")  # fmt: skip
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    resp.read()
                self.images += 1
            except Exception:  # noqa: BLE001
                self.errors += 1


def run(minutes: float, interval_s: float = 10.0, plot: Path | None = None) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, broker_pid):
        clip = make_sample_clip(tmp / "clip.mp4", frames=50)
        import cv2

        cap = cv2.VideoCapture(str(clip.path))
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        images = write_images(frames, tmp / "rtsp-frames")
        server = RtspServer(free_port(), images=images, fps=FPS).start()
        platform = Platform(bootstrap, tmp, clip.path, server.url())
        samples: list[dict[str, Any]] = []
        viewer = Viewer(f"http://127.0.0.1:{platform.ports['console']}")
        try:
            platform.start()
            viewer.start()
            started = time.monotonic()
            end = started + minutes * 60
            while time.monotonic() < end:
                sample: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), "stored": platform.stored()}
                for role, p in platform.procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{role} exited with {p.returncode}; see {tmp / (role + '.log')}")
                    sample[role] = _proc_figures(p.pid)
                if broker_pid is not None:
                    sample["broker"] = _proc_figures(broker_pid)
                sample["lag"] = _lags(bootstrap, platform.groups)
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                time.sleep(max(0.0, started + len(samples) * interval_s - time.monotonic()))
        finally:
            viewer.stop.set()
            # the cameras stop first; then the consumers get time to drain before they stop
            ingest = platform.procs.get("ingest")
            if ingest is not None and ingest.poll() is None:
                ingest.send_signal(signal.SIGTERM)
                ingest.wait(90)
            published = _end_offsets(bootstrap, platform.topics["frames"])
            deadline = time.monotonic() + 180
            skipped = 0.0
            while time.monotonic() < deadline:
                # live frames inference skipped by the camera's policy (newest first, too old) are not losses
                skipped = _metric_sum(platform.ports["infer"], "visionstream_inference_frames_skipped_total")
                if platform.stored() + skipped >= published:
                    break
                time.sleep(2)
            codes = platform.stop()
            server.stop()
        stored = platform.stored()
        dead = sum(_end_offsets(bootstrap, platform.topics[t]) for t in ("frames.dlq", "detections.dlq"))
        t_s = [s["t_s"] for s in samples]
        slopes: dict[str, dict[str, float]] = {}
        for role in (*ROLES, "broker"):
            if role not in samples[0]:
                continue
            slopes[role] = {
                f"{k}_per_h": round(_slope_per_hour(t_s, [s[role][k] for s in samples]), 2)
                for k in ("rss_mb", "threads", "fds")
            }
        for role in GROUPS:
            slopes[role]["lag_per_h"] = round(_slope_per_hour(t_s, [s["lag"][role] for s in samples]), 1)
        result = {
            "minutes": minutes,
            "samples": len(samples),
            "frames_published": published,
            "events_stored": stored,
            "skipped_live": int(skipped),
            "lost": published - stored - int(skipped),
            "dead_letters": dead,
            "exit_codes": codes,
            "viewer": {"images": viewer.images, "errors": viewer.errors},
            "rss_mb_first_last": {r: [round(samples[0][r]["rss_mb"]), round(samples[-1][r]["rss_mb"])] for r in slopes},
            "max_lag": {r: max(s["lag"][r] for s in samples) for r in GROUPS},
            "slopes_last_two_thirds": slopes,
        }
        if plot is not None:
            _plot(samples, plot)
            result["plot"] = str(plot)
        return result


def _plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    roles = [r for r in (*ROLES, "broker") if r in samples[0]]
    for ax, key, title in zip(axes[:3], ("rss_mb", "threads", "fds"), ("RSS (MB)", "threads", "open fds"), strict=True):
        for r in roles:
            ax.plot(t, [s[r][key] for s in samples], label=r)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    for r in GROUPS:
        axes[3].plot(t, [s["lag"][r] for s in samples], label=r)
    axes[3].set_ylabel("consumer lag (records)")
    axes[3].set_xlabel("minutes")
    axes[3].grid(alpha=0.3)
    axes[0].legend(loc="upper left", ncol=3)
    axes[3].legend(loc="upper left")
    fig.suptitle("python -m bench soak")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
