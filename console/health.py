"""The roles as the console sees them: each role's /readyz (polled), cameras' states and capture rates (from the
ingest role's probe body), and each consumer group's lag (committed offsets against the partitions' ends)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
from kafka import TopicPartition

from visionstream.faults import describe
from visionstream.kafka import make_admin, make_reader
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)


class RoleProbes(threading.Thread):
    """Polls every role's /readyz every `interval_s`; keeps the last answer and the cameras' capture rates."""

    def __init__(self, roles: dict[str, str], timeout_s: float, interval_s: float = 2.0) -> None:
        super().__init__(name="console-probes", daemon=True)
        self.roles = roles
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.results: dict[str, dict[str, Any]] = {}
        self.capture_fps: dict[str, float] = {}
        self._captured: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stopping.is_set():
                self.poll(client)
                self._stopping.wait(self.interval_s)

    def poll(self, client: httpx.Client) -> None:
        for role, url in self.roles.items():
            result: dict[str, Any] = {"role": role, "url": url, "checked_ms": int(time.time() * 1000)}
            try:
                resp = client.get(url.rstrip("/") + "/readyz")
                body = resp.json()
                result.update(ready=resp.status_code == 200, body=body if isinstance(body, dict) else {})
            except (httpx.HTTPError, ValueError) as exc:
                result.update(ready=False, body={}, error=f"{type(exc).__name__}: {exc}"[:300])
            with self._lock:
                self.results[role] = result
                if role == "ingest":
                    self._rates(result["body"].get("cameras") or {})

    def _rates(self, cameras: dict[str, Any]) -> None:
        now = time.monotonic()
        for camera, status in cameras.items():
            captured = int(status.get("captured") or 0)
            before = self._captured.get(camera)
            if before is not None and now > before[0] and captured >= before[1]:
                self.capture_fps[camera] = round((captured - before[1]) / (now - before[0]), 2)
            self._captured[camera] = (now, captured)

    def roles_view(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self.results.get(r, {"role": r, "url": u, "ready": None, "body": {}}) for r, u in self.roles.items()
            ]

    def cameras(self) -> dict[str, dict[str, Any]]:
        """Each camera the ingest role reports: its state, error and capture rate."""
        with self._lock:
            body = self.results.get("ingest", {}).get("body", {})
            return {
                camera: {"state": s.get("state"), "error": s.get("error"), "capture_fps": self.capture_fps.get(camera)}
                for camera, s in (body.get("cameras") or {}).items()
            }


def consumer_lag(kafka: KafkaSettings, groups: list[str]) -> list[dict[str, Any]]:
    """Per group and topic: records not yet committed (the sum over partitions), or the error met asking."""
    rows: list[dict[str, Any]] = []
    admin = reader = None
    try:
        admin = make_admin(kafka, "console")
        reader = make_reader(kafka, "console-lag")
        for group in groups:
            try:
                committed = admin.list_group_offsets({group: None})[group]
                tps = sorted(tp for tp in committed if isinstance(tp, TopicPartition))
                for topic in {tp.topic for tp in tps}:  # the reader needs each topic's metadata for end_offsets
                    reader.partitions_for_topic(topic)
                ends = reader.end_offsets(tps) if tps else {}
                by_topic: dict[str, int] = {}
                for tp in tps:
                    by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, ends.get(tp, 0) - committed[tp].offset)
                if not by_topic:
                    rows.append({"group": group, "topic": None, "lag": None, "error": "no committed offsets"})
                rows += [{"group": group, "topic": t, "lag": n, "error": None} for t, n in sorted(by_topic.items())]
            except Exception as exc:  # noqa: BLE001 (the page says why, the console carries on)
                rows.append({"group": group, "topic": None, "lag": None, "error": describe(exc)})
    except Exception as exc:  # noqa: BLE001 (the page says why, the console carries on)
        rows.append({"group": "*", "topic": None, "lag": None, "error": describe(exc)})
    finally:
        for client in (admin, reader):
            if client is not None:
                client.close()
    return rows
