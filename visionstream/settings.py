"""Typed, frozen settings shared by every role: how to reach Kafka and which topics to use."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class Section(BaseModel):
    """Base of every settings section: immutable, and a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SchemaRegistrySettings(Section):
    url: str | None = Field(
        None,
        description="Base URL of a Confluent-compatible schema registry (Apicurio: http://HOST:8080/apis/ccompat/v7); "
        "readers need it to decode registry-framed records.",
    )
    framing: Literal["single_object", "registry"] = Field(
        "single_object",
        description="How records are written: Avro single-object encoding (C3 01 + fingerprint), or the Confluent "
        "wire format (00 + 4-byte schema id) with the schema registered under <topic>-value. Readers take both.",
    )
    compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "FORWARD", "NONE"] = Field(
        "BACKWARD", description="Compatibility set on each subject before its schema is registered."
    )
    username: str | None = Field(None, description="Basic-auth user of the registry.")
    password: SecretStr | None = Field(None, description="Basic-auth password of the registry (never logged).")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one request to the registry.")

    @model_validator(mode="after")
    def _url_for_registry_framing(self) -> SchemaRegistrySettings:
        if self.framing == "registry" and not self.url:
            raise ValueError("schema_registry.framing 'registry' needs schema_registry.url")
        return self


class KafkaSettings(Section):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list of brokers.")
    client_id: str = Field("visionstream", description="Client id prefix sent to the brokers.")
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with SASL_*.")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: str | None = Field(None, description="CA bundle used to verify the brokers (SSL, SASL_SSL).")
    ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate.")
    bootstrap_timeout_s: float = Field(
        15.0, gt=0, description="How long a worker tries to reach the brokers at start before it gives up."
    )
    request_timeout_ms: int = Field(30000, gt=0, description="Timeout of one request to a broker.")
    reconnect_backoff_max_ms: int = Field(
        1000,
        gt=0,
        description="Longest wait between attempts to reconnect to a broker (kafka-python's default, 30 s, delays "
        "a worker's recovery by up to that long after a broker comes back; the Java client's is 1 s).",
    )
    session_timeout_ms: int = Field(
        10000, ge=6000, description="A consumer silent this long is dropped from its group and its partitions move."
    )
    schema_registry: SchemaRegistrySettings = Field(
        default_factory=SchemaRegistrySettings,
        description="Schema-registry framing of the records the roles write (see 'For downstream teams').",
    )


class TopicSettings(Section):
    frames: str = Field("frames", description="Topic of encoded frames, keyed by camera id.")
    detections: str = Field("detections", description="Topic of detection events, keyed by camera id.")
    frames_dlq: str = Field("frames.dlq", description="Dead letters of the frames topic (original bytes + headers).")
    detections_dlq: str = Field("detections.dlq", description="Dead letters of the detections topic.")
    tracks: str = Field("tracks", description="Topic of track, zone, line and occupancy events, keyed by camera id.")
    analytics_state: str = Field(
        "analytics.state",
        description="Compacted changelog of the analytics role's per-camera state (partitions: as detections).",
    )
    faces: str = Field(
        "faces.gallery",
        description="Compacted topic of the face gallery, keyed by person (embeddings: biometric data, restrict reads).",
    )
    manage: bool = Field(True, description="Create missing topics at start with the settings below.")
    frames_partitions: int = Field(4, ge=1, description="Partitions of the frames topic (max inference workers).")
    detections_partitions: int = Field(4, ge=1, description="Partitions of the detections topic.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    frames_max_message_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="max.message.bytes of the frames topic; larger frames are rejected.",
    )
    frames_retention_ms: int = Field(3_600_000, description="retention.ms of the frames topic (1 hour).")
    detections_retention_ms: int = Field(7 * 86_400_000, description="retention.ms of the detections topic.")
    tracks_retention_ms: int = Field(7 * 86_400_000, description="retention.ms of the tracks topic.")
    dlq_retention_ms: int = Field(14 * 86_400_000, description="retention.ms of the dead-letter topics.")


def read_token_file(path: str, setting: str = "sink.api_token_file") -> str:
    """The token in `path` (surrounding whitespace removed); ValueError, naming the file, if unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{setting} {path}: cannot read it ({exc})") from exc
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ValueError(f"{setting} {path}: the token must be at least 16 characters, without spaces")
    return token
