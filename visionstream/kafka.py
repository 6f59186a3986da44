"""Kafka client construction with the project's defaults, and clear errors when the brokers cannot be reached."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

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
    }
    if settings.sasl_mechanism:
        conf.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        )
    if settings.ssl_cafile:
        conf["ssl_cafile"] = settings.ssl_cafile
    return conf


def _connect(factory: Any, settings: KafkaSettings, role: str, **extra: Any) -> Any:
    conf = connection_config(settings, role)
    conf.update(extra)
    try:
        return factory(**conf)
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {settings.bootstrap_timeout_s:g}s "
            f"({type(exc).__name__}: {exc}); is the broker running? (local: `visionstream kafka start`)"
        ) from exc


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
        **extra,
    )
    consumer.subscribe(topics)
    return consumer


def make_admin(settings: KafkaSettings, role: str) -> KafkaAdminClient:
    return _connect(KafkaAdminClient, settings, role)
