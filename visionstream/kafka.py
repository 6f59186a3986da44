"""Kafka client construction with the project's defaults, and clear errors when the brokers cannot be reached."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.coordinator.base import MemberState
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from visionstream.faults import KafkaFatalError, describe, fatal_error, is_fatal
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)


class BrokerUnavailableError(RuntimeError):
    """The brokers could not be reached within the configured time."""


def connection_config(settings: KafkaSettings, role: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()],
        "client_id": f"{settings.client_id}-{role}",
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": int(settings.bootstrap_timeout_s * 1000),
        "request_timeout_ms": settings.request_timeout_ms,
        "reconnect_backoff_max_ms": settings.reconnect_backoff_max_ms,
    }
    if settings.sasl_mechanism:
        conf.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        )
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(settings, key):
            conf[key] = getattr(settings, key)
    return conf


def _connect(factory: Any, settings: KafkaSettings, role: str, **extra: Any) -> Any:
    conf = connection_config(settings, role)
    conf.update(extra)
    try:
        with _client_logs_quiet():
            return factory(**conf)
    except (KafkaError, OSError) as exc:
        if is_fatal(exc):  # our settings or credentials are wrong, not the network
            raise fatal_error(exc, role, "connection") from exc
        security = diagnose_security(settings)
        if security is not None:
            raise KafkaFatalError(
                f"cannot connect the {role} to Kafka at {settings.bootstrap_servers}: {security}"
            ) from exc
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {settings.bootstrap_timeout_s:g}s "
            f"({describe(exc)}); is the broker running? (local: `visionstream kafka start`)"
        ) from exc


@contextmanager
def _client_logs_quiet() -> Iterator[None]:
    """While a client bootstraps, its per-attempt connection logs would bury the one line we print on failure;
    unless the operator asked for the client's logs (--kafka-log-level below WARNING), hold them back."""
    kafka_log = logging.getLogger("kafka")
    if kafka_log.getEffectiveLevel() < logging.WARNING:
        yield
        return
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def diagnose_security(settings: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """Why bootstrapping failed when TLS or SASL is in play, found by a TLS handshake of our own with the same CA
    and host-name check as the client; None when the broker is simply not reachable (or no TLS/SASL is used).

    The client only reports that it could not bootstrap: an untrusted CA, a wrong host name and refused SASL
    credentials would all read "is the broker running?", which sends an operator the wrong way.
    """
    protocol = settings.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    with sock:
        if protocol in ("SSL", "SASL_SSL"):
            try:
                ctx = ssl.create_default_context(cafile=settings.ssl_cafile)
                if settings.ssl_certfile:
                    ctx.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
                with ctx.wrap_socket(sock, server_hostname=host):
                    pass
            except ssl.SSLCertVerificationError as exc:
                return (
                    f"TLS certificate not accepted ({exc.verify_message}): check kafka.ssl_cafile and that "
                    f"kafka.bootstrap_servers names a host the broker's certificate is for"
                )
            except (ssl.SSLError, OSError) as exc:
                return f"TLS handshake failed ({describe(exc)}): is this port a TLS listener?"
    if protocol.startswith("SASL"):
        return (
            f"the broker took the connection but refused the SASL authentication ({settings.sasl_mechanism}): "
            "check kafka.sasl_username, kafka.sasl_password and kafka.sasl_mechanism"
        )
    return None


def make_producer(settings: KafkaSettings, role: str, max_request_size: int, **extra: Any) -> KafkaProducer:
    """Idempotent producer, acks from all in-sync replicas: a retried send is never written twice."""
    return _connect(
        KafkaProducer,
        settings,
        role,
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_size,
        **extra,
    )


def make_consumer(settings: KafkaSettings, role: str, group_id: str, topics: list[str], **extra: Any) -> KafkaConsumer:
    """Group member that never commits on its own: the worker commits what it has made durable."""
    consumer = _connect(
        KafkaConsumer,
        settings,
        role,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 3),
        # A topic created after we joined is noticed within this, not the client's default five minutes.
        metadata_max_age_ms=30_000,
        **extra,
    )
    _await_partitions(consumer, topics, settings.bootstrap_timeout_s)
    consumer.subscribe(topics, listener=ForgetStaleOffsetFetches(consumer))
    return consumer


def make_reader(settings: KafkaSettings, role: str, **extra: Any) -> KafkaConsumer:
    """A consumer outside any group, for reading partitions it assigns itself (e.g. a state changelog)."""
    return _connect(
        KafkaConsumer, settings, role, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **extra
    )


def read_latest_by_key(
    reader: KafkaConsumer, topic: str, partition: int, timeout_s: float, keep_tombstones: bool = False
) -> dict[str, Any]:
    """The latest value of each key on one partition of a compacted topic, read from its start to its end as it
    was when the read began: bytes, or for a key whose latest record is a tombstone nothing (or None with
    `keep_tombstones`). Raises TimeoutError past `timeout_s`."""
    tp = TopicPartition(topic, partition)
    reader.assign([tp])
    reader.seek_to_beginning(tp)
    end = reader.end_offsets([tp])[tp]  # read_committed: the last stable offset
    latest: dict[str, bytes | None] = {}
    deadline = time.monotonic() + timeout_s
    while reader.position(tp) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} partition {partition} not read to its end within {timeout_s:.0f}s")
        for batch in reader.poll(timeout_ms=200).values():
            latest.update(keyed(batch))
    return latest if keep_tombstones else {k: v for k, v in latest.items() if v is not None}


def keyed(records: Iterable[Any]) -> dict[str, bytes | None]:
    """Records of a compacted topic as key -> value (None: a tombstone), the later record of a key winning."""
    return {(r.key.decode("utf-8", "replace") if r.key else ""): r.value for r in records}


class CompactedFollower:
    """Follows partition 0 of a compacted topic: start() reads it to its end and hands `apply` every key's latest
    value (None for a tombstone), then a thread hands it each new batch of records as they come."""

    def __init__(
        self, kafka: KafkaSettings, role: str, topic: str, apply: Callable[[dict[str, bytes | None]], None],
        timeout_s: float,
    ) -> None:  # fmt: skip
        self._topic, self._apply, self._timeout_s = topic, apply, timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader = make_reader(kafka, role)

    def start(self) -> None:
        self._apply(read_latest_by_key(self._reader, self._topic, 0, self._timeout_s, keep_tombstones=True))
        self._thread = threading.Thread(target=self._follow, name=f"follow-{self._topic}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                batches = self._reader.poll(timeout_ms=500)
            except (KafkaError, OSError) as exc:  # a broker outage: keep what we have, try again
                log.warning("following %s: %s", self._topic, describe(exc))
                self._stop.wait(1.0)
                continue
            for batch in batches.values():
                try:
                    self._apply(keyed(batch))
                except Exception:  # noqa: BLE001 (one bad update must not stop following)
                    log.exception("following %s: an update failed", self._topic)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._reader.close()


def forget_offset_fetches(consumer: KafkaConsumer) -> None:
    """Drop the client's cached committed-offset requests (see ForgetStaleOffsetFetches)."""
    cache = getattr(getattr(consumer, "_coordinator", None), "_offset_fetch_futures", None)
    if isinstance(cache, dict):
        cache.clear()


class ForgetStaleOffsetFetches(ConsumerRebalanceListener):
    """Work around a kafka-python 3.0 defect that made exactly-once repeat frames after a worker was killed.

    The client caches its committed-offset request by partition set. A request whose poll timed out stays in the
    cache and completes later; the next request for the same set, even generations later, takes that old answer
    instead of asking again. A worker that first held all partitions alone (no offsets committed yet, request
    timed out) and gets all of them back when its peer dies is told "no committed offsets" and re-reads them all
    from the start: a second committed event for every frame. (The Java client keys this cache by generation.)
    Forgetting the cache whenever the assignment changes makes every new assignment ask the coordinator.
    """

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        forget_offset_fetches(self.consumer)

    def on_partitions_assigned(self, assigned: Any) -> None:
        forget_offset_fetches(self.consumer)


def _await_partitions(consumer: KafkaConsumer, topics: list[str], timeout_s: float) -> None:
    """Join the group only once our metadata knows the topics' partitions, so the assignment is not empty."""
    deadline = time.monotonic() + timeout_s
    for topic in topics:
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                log.warning("topic=%s has no partitions yet; subscribing anyway (it will be picked up)", topic)
                return
            time.sleep(0.2)


def unstick_rebalance(consumer: KafkaConsumer) -> bool:
    """Work around a kafka-python 3.0 race that leaves a group member rebalancing forever.

    A metadata flap can start a rejoin; if the JoinGroup outlives one short poll and the metadata flaps back,
    need_rejoin() turns False, so poll() never applies the finished join: the member stays REBALANCING and
    every commit fails with RebalanceInProgressError. Asking for a rejoin lets the next poll complete it.
    Returns True when it intervened.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "state", None) is not MemberState.REBALANCING:
        return False
    join = getattr(coordinator, "_join_task", None)
    if coordinator.need_rejoin() or (join is not None and not join.is_done):
        return False  # a rebalance that is really under way
    log.warning("group member stuck rebalancing with nothing to rejoin; requesting a rejoin")
    coordinator.request_rejoin()
    return True


def close_producer(producer: KafkaProducer | None, timeout_s: float) -> None:
    """Flush, then close, each bounded by `timeout_s`, and never raise: stopping while the broker is away must not
    hang or fail, and what stays unacknowledged is failed to its callbacks, then re-read (consumers) or reported
    (ingest)."""
    if producer is None:
        return
    try:
        producer.flush(timeout=timeout_s)
    except (KafkaError, OSError) as exc:
        log.warning("messages still unacknowledged at stop: %s", describe(exc))
    try:
        producer.close(timeout=timeout_s)  # flushes again, and raises if that flush times out
    except (KafkaError, OSError):
        # Force the I/O thread to fail what it holds (each send's errback sees it), then close for good.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(timeout_s)
        try:
            producer.close(timeout=0)
        except (KafkaError, OSError) as exc:
            log.warning("producer closed with its I/O thread still running: %s", describe(exc))


def coordinator_reachable(consumer: KafkaConsumer) -> bool:
    """True while the group coordinator is known and our connection to it is up. A broker killed or restarted
    drops the connection at once; a silent one (paused, half-open) once a request outlives request_timeout_ms.
    Read without side effects (the client's coordinator_unknown() would start a lookup)."""
    coordinator = getattr(consumer, "_coordinator", None)
    client = getattr(consumer, "_client", None)
    if coordinator is None or client is None or not hasattr(client, "connected"):
        return True  # not a group member, or a client without these attributes: no opinion
    node = getattr(coordinator, "coordinator_id", None)
    return node is not None and bool(client.connected(node))


def make_admin(settings: KafkaSettings, role: str) -> KafkaAdminClient:
    return _connect(KafkaAdminClient, settings, role)
