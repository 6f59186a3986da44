"""Schema-registry framing: the Confluent wire format, for tools that read Avro through a schema registry.

A record framed this way is byte 0x00, the schema's registry id as a 4-byte big-endian integer, then the Avro
binary body (the same body as the single-object encoding's). The schema is registered under the subject
`<topic>-value` (the TopicNameStrategy every Confluent-compatible tool defaults to), with the subject's
compatibility set to BACKWARD first, so the registry refuses a schema that could not read what is already on the
topic, before a record is written with it. Readers accept either framing (the first byte tells them apart: 0xC3 is
the single-object marker, 0x00 the registry's) and look a registry id up once.

The registry client is confluent-kafka's (`confluent_kafka.schema_registry.SchemaRegistryClient`); any server with
the Confluent-compatible API works: Apicurio Registry (`/apis/ccompat/v7`, what `visionstream registry start` runs),
Confluent Schema Registry, Karapace, Redpanda.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from visionstream.settings import KafkaSettings, SchemaRegistrySettings

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from schemas.codec import TypedCodec

log = logging.getLogger(__name__)

MAGIC = 0
HEADER_LEN = 5
# A registry that does not answer (or answers 408, 429, 5xx): tries, 0.5, 1 and 2 s apart, of a lookup or a
# registration. The client's own retries are off (each of its calls retried 3 times more, with backoff up to 20 s:
# a lookup took about 20 s to give up instead of 3.5).
LOOKUP_ATTEMPTS = 4
T = TypeVar("T")


class SchemaRegistryError(RuntimeError):
    """The registry refused a schema (incompatible with the subject's versions) or could not be reached at start."""


def subject(topic: str) -> str:
    return f"{topic}-value"


class SchemaRegistry:
    """Registers this process's schemas and looks writer schemas up by id, both cached (one process-wide client per
    registry settings: `for_settings`)."""

    def __init__(self, settings: SchemaRegistrySettings, client: SchemaRegistryClient | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        if client is None:
            if not settings.url:
                raise SchemaRegistryError("no schema registry URL is set (kafka.schema_registry.url)")
            conf: dict[str, Any] = {"url": settings.url, "timeout": settings.timeout_s, "max.retries": 0}
            if settings.username:
                secret = settings.password.get_secret_value() if settings.password else ""
                conf["basic.auth.user.info"] = f"{settings.username}:{secret}"
            client = SchemaRegistryClient(conf)
        self.settings = settings
        self.client = client
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def register(self, topic: str, schema: dict[str, Any]) -> int:
        """The registry id of `schema` under `<topic>-value`, registering it (compatibility first) if need be."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError

        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        key = (subject(topic), text)
        with self._lock:
            known = self._ids.get(key)
            if known is not None:
                return known

            def register() -> int:
                self.client.set_compatibility(subject_name=key[0], level=self.settings.compatibility)
                return int(self.client.register_schema(key[0], Schema(text, "AVRO")))

            try:
                schema_id = _tried(register)
            except ClientError as exc:
                raise SchemaRegistryError(f"the registry refused {schema.get('name')} under {key[0]}: {exc}") from exc
            except Exception as exc:  # httpx's connection errors and timeouts
                raise SchemaRegistryError(
                    f"the schema registry at {self.settings.url} is unreachable: {exc!r}"
                ) from exc
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, schema)
            return schema_id

    def writer_schema(self, schema_id: int) -> dict[str, Any] | None:
        """The schema registered as `schema_id` (None: the registry does not have it). A registry that cannot be
        reached is asked a few times, then SchemaRegistryError."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError

        with self._lock:
            known = self._by_id.get(schema_id)
        if known is not None:
            return known
        try:
            found = _tried(lambda: self.client.get_schema(schema_id))
        except ClientError as exc:
            if exc.http_status_code == 404:
                return None
            error: Exception = exc
        except Exception as exc:  # connection errors and timeouts
            error = exc
        else:
            doc = json.loads(found.schema_str or "null")
            with self._lock:
                self._by_id[schema_id] = doc
            return doc
        raise SchemaRegistryError(f"schema id {schema_id}: the registry at {self.settings.url} failed: {error!r}")


def _tried(call: Callable[[], T]) -> T:
    """`call()`, tried again (LOOKUP_ATTEMPTS in all) while the registry does not answer or answers 408, 429 or
    5xx; any other answer (404, 409, 422, 401) is raised at once."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError

    delay = 0.5
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            return call()
        except ClientError as exc:
            status = exc.http_status_code
            if attempt == LOOKUP_ATTEMPTS - 1 or status is None or not (status in (408, 429) or status >= 500):
                raise
        except Exception:  # connection errors and timeouts
            if attempt == LOOKUP_ATTEMPTS - 1:
                raise
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


_shared: dict[str, SchemaRegistry] = {}
_shared_lock = threading.Lock()


def for_settings(settings: SchemaRegistrySettings) -> SchemaRegistry | None:
    """The process's registry for these settings (None without a URL: registry framing can then not be read)."""
    if not settings.url:
        return None
    key = settings.model_dump_json()
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = SchemaRegistry(settings)
        return found


C = TypeVar("C", bound="TypedCodec[Any]")


def framed(codec: C, kafka: KafkaSettings, write_topic: str | None = None) -> C:
    """`codec` reading either framing (registry framing through the configured registry), and writing to
    `write_topic` in the configured framing (registering its schema now when that is the registry's)."""
    settings = kafka.schema_registry
    registry = for_settings(settings)
    codec.use_registry(registry, write_topic if settings.framing == "registry" else None)
    return codec
