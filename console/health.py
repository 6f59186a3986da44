"""The roles as the console sees them: each role's /readyz (polled), cameras' states and capture rates (from the
ingest role's probe body), and each consumer group's lag (committed offsets against the partitions' ends)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from kafka import TopicPartition

from visionstream.faults import describe
from visionstream.kafka import make_admin, make_reader
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)


class RoleProbes(threading.Thread):
    """Polls every replica of every role's /readyz every `interval_s`; keeps the last answers and the cameras'
    capture rates.

    A role may have several replicas behind one name (a Kubernetes Service, Docker's DNS for a scaled service),
    where one URL would show whichever replica answered. So each role URL's host name is resolved on every round,
    each address is polled, and each replica is shown apart, told by the `instance` its /readyz names (addresses
    of one process, e.g. 127.0.0.1 and ::1 for localhost, count once). A role may also list several URLs."""

    def __init__(self, roles: dict[str, str | list[str]], timeout_s: float, interval_s: float = 2.0) -> None:
        super().__init__(name="console-probes", daemon=True)
        self.roles = {role: [urls] if isinstance(urls, str) else list(urls) for role, urls in roles.items()}
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.results: dict[str, list[dict[str, Any]]] = {}
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
        for role, urls in self.roles.items():
            replicas: dict[str, dict[str, Any]] = {}
            for url in urls:
                for target in replica_urls(url):
                    result = self._probe(client, role, url, target)
                    key = str(result["body"].get("instance") or target)
                    if key not in replicas or (result["ready"] and not replicas[key]["ready"]):
                        replicas[key] = {**result, "replica": key}
            with self._lock:
                self.results[role] = sorted(replicas.values(), key=lambda r: r["replica"])
                if role == "ingest":
                    cameras: dict[str, Any] = {}
                    for r in self.results[role]:
                        cameras.update(r["body"].get("cameras") or {})
                    self._rates(cameras)

    def _probe(self, client: httpx.Client, role: str, url: str, target: str) -> dict[str, Any]:
        result: dict[str, Any] = {"role": role, "url": url, "checked_ms": int(time.time() * 1000)}
        try:
            resp = client.get(target.rstrip("/") + "/readyz")
            body = resp.json()
            result.update(ready=resp.status_code == 200, body=body if isinstance(body, dict) else {})
        except (httpx.HTTPError, ValueError) as exc:
            result.update(ready=False, body={}, error=f"{type(exc).__name__}: {exc}"[:300])
        return result

    def _rates(self, cameras: dict[str, Any]) -> None:
        now = time.monotonic()
        for camera, status in cameras.items():
            captured = int(status.get("captured") or 0)
            before = self._captured.get(camera)
            if before is not None and now > before[0] and captured >= before[1]:
                self.capture_fps[camera] = round((captured - before[1]) / (now - before[0]), 2)
            self._captured[camera] = (now, captured)

    def roles_view(self) -> list[dict[str, Any]]:
        """One row per replica of each role (a role not polled yet: one row, `ready` None)."""
        with self._lock:
            rows: list[dict[str, Any]] = []
            for role, urls in self.roles.items():
                rows += self.results.get(role) or [{"role": role, "url": urls[0], "ready": None, "body": {}}]
            return rows

    def cameras(self) -> dict[str, dict[str, Any]]:
        """Each camera the ingest role's replicas report: its state, error and capture rate."""
        with self._lock:
            reported: dict[str, Any] = {}
            for r in self.results.get("ingest", []):
                reported.update(r["body"].get("cameras") or {})
            return {
                camera: {"state": s.get("state"), "error": s.get("error"), "capture_fps": self.capture_fps.get(camera)}
                for camera, s in reported.items()
            }


def replica_urls(url: str) -> list[str]:
    """`url` once per address its host name resolves to, IPv4 first (the URL itself when it resolves to one
    address, or none)."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return [url]
    addresses: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6):  # one family: localhost is not two replicas (127.0.0.1, ::1)
        try:
            addresses = sorted({str(i[4][0]) for i in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)})
        except OSError:
            continue
        if addresses:
            break
    if len(addresses) <= 1:
        return [url]
    out = []
    for address in addresses:
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        out.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    return out


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
