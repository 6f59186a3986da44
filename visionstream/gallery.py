"""The face gallery on Kafka: one compacted record per person on `topics.faces`, a tombstone removes them.

Every inference worker reads the whole topic at start and follows it, so an enrolment or a removal reaches the
whole group within seconds, without a restart; `visionstream faces` writes and lists it.
"""

from __future__ import annotations

import logging

from schemas.faces import FaceEnrolment, FaceEnrolmentCodec
from schemas.registry import framed
from visionstream.kafka import close_producer, make_producer, make_reader, read_latest_by_key
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

MODEL_ID = "dlib_face_recognition_resnet_model_v1"
MAX_RECORD_BYTES = 1 << 20  # 64 embeddings of 128 floats are about 33 KB


def publish(kafka: KafkaSettings, topics: TopicSettings, name: str, enrolment: FaceEnrolment | None) -> None:
    """Write a person's enrolment, or their tombstone (None), and wait for the brokers to have it."""
    producer = make_producer(kafka, "faces", MAX_RECORD_BYTES)
    try:
        codec = framed(FaceEnrolmentCodec(), kafka, topics.faces)  # registry framing: registers its schema
        value = codec.encode(enrolment) if enrolment is not None else None
        producer.send(topics.faces, key=name.encode("utf-8"), value=value).get(timeout=kafka.request_timeout_ms / 1000)
    finally:
        close_producer(producer, 10.0)


def decode_gallery(records: dict[str, bytes], kafka: KafkaSettings | None = None) -> dict[str, FaceEnrolment]:
    """Each person's enrolment (either framing; registry framing through `kafka`'s registry); a record that does
    not decode (or is of another embedding model) is skipped with a warning naming the person, never its
    contents."""
    codec = framed(FaceEnrolmentCodec(), kafka) if kafka is not None else FaceEnrolmentCodec()
    people = {}
    for key, value in records.items():
        try:
            enrolment = codec.decode(value)
        except Exception as exc:  # noqa: BLE001 (one bad record must not empty the gallery)
            log.warning("face gallery record skipped person=%r: %s", key[:64], exc)
            continue
        if enrolment.model != MODEL_ID:
            log.warning("face gallery record skipped person=%r: embeddings of model %r", key[:64], enrolment.model)
            continue
        people[enrolment.name] = enrolment
    return people


def read_gallery(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 30.0) -> dict[str, FaceEnrolment]:
    """The gallery as it is now: every person's latest enrolment."""
    reader = make_reader(kafka, "faces")
    try:
        return decode_gallery(read_latest_by_key(reader, topics.faces, 0, timeout_s), kafka)
    finally:
        reader.close()
