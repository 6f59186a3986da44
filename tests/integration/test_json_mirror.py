"""The JSON view of detections for tools without Avro: `visionstream export-json` on a real broker, read back by our
own consumer, by Apache Kafka Connect (a standalone worker from Maven Central, JsonConverter into a file sink) and by
kafkajs (npm)."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from devkit.events import make_events
from devkit.topics import read_all, wait_until
from schemas import EventCodec
from schemas.codec import load_schema
from schemas.registry import SchemaRegistry
from sink.json_mirror import JsonMirror, JsonMirrorSettings
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration


def _publish(settings, registry_url: str | None, n: int = 60) -> list:
    """n events on the detections topic: the first half single-object, the second registry-framed (when a
    registry is given), and one record of garbage in the middle."""
    events = make_events(n, cameras=3)
    plain = EventCodec()
    framed = None
    if registry_url:
        reg = settings.kafka.schema_registry.model_copy(update={"url": registry_url, "framing": "registry"})
        framed = EventCodec().use_registry(SchemaRegistry(reg), write_topic=settings.topics.detections)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for i, e in enumerate(events):
        codec = framed if framed is not None and i >= n // 2 else plain
        producer.send(settings.topics.detections, key=e.camera_id.encode(), value=codec.encode(e))
        if i == n // 2:
            producer.send(settings.topics.detections, key=b"cam0", value=b"\x00\x00not avro at all")
    producer.flush()
    producer.close()
    return events


def _mirror(settings, registry_url: str | None) -> tuple[JsonMirror, WorkerThread]:
    kafka = settings.kafka
    if registry_url:
        kafka = kafka.model_copy(
            update={"schema_registry": kafka.schema_registry.model_copy(update={"url": registry_url})}
        )
    s = JsonMirrorSettings(group_id=f"{settings.topics.detections}-mirror", topics=["detections"], batch_size=7)
    mirror = JsonMirror(s, kafka, settings.topics)
    return mirror, WorkerThread(mirror)


def test_each_event_is_mirrored_once_as_json_across_a_restart_and_either_framing(settings, schema_registry_url):
    events = _publish(settings, schema_registry_url)
    n = len(events)
    mirror, thread = _mirror(settings, schema_registry_url)
    thread.start()
    wait_until(lambda: mirror.stats.mirrored >= n // 3, 60, "a third mirrored")
    thread.stop()  # mid-stream; a new mirror in the same group carries on
    mirror2, thread2 = _mirror(settings, schema_registry_url)
    thread2.start()
    wait_until(lambda: mirror.stats.mirrored + mirror2.stats.mirrored >= n, 60, "all mirrored")
    thread2.stop()
    out = read_all(settings.kafka.bootstrap_servers, settings.topics.detections + ".json", n, timeout_s=30)
    assert len(out) == n, "each event once"
    objects = [json.loads(r.value) for r in out]
    assert sorted(o["event_id"] for o in objects) == sorted(e.event_id for e in events)
    names = [f["name"] for f in load_schema("detection_event")["fields"]]
    assert all(list(o) == names for o in objects), "the Avro schema's field names, in its order"
    assert all(r.key.decode() == o["camera_id"] for r, o in zip(out, objects, strict=True)), "keyed like the source"
    by_id = {e.event_id: e for e in events}
    one = objects[-1]
    assert one["detections"][0]["label"] == by_id[one["event_id"]].detections[0].label
    dlq = read_all(settings.kafka.bootstrap_servers, settings.topics.detections_dlq, 1, timeout_s=10)
    assert [r.value for r in dlq] == [b"\x00\x00not avro at all"]
    assert mirror.stats.dead_lettered + mirror2.stats.dead_lettered == 1


def test_an_unknown_topic_name_is_refused(settings):
    with pytest.raises(ValueError, match="cannot mirror frames"):
        JsonMirror(JsonMirrorSettings(topics=["frames"]), settings.kafka, settings.topics).sources()


def test_kafka_connect_reads_the_json_mirror_with_its_json_converter_into_a_file(settings, tmp_path):
    """A standalone Apache Kafka Connect worker (Maven Central: connect-runtime, connect-json, connect-file):
    JsonConverter (schemas.enable=false) reads detections.json, FileStreamSink writes each record to a file. Every
    event is in the file once."""
    events = _publish(settings, None, n=30)
    mirror, thread = _mirror(settings, None)
    thread.start()
    wait_until(lambda: mirror.stats.mirrored >= len(events), 60, "all mirrored")
    thread.stop()
    lines = _file_sink_lines(settings, tmp_path, settings.topics.detections + ".json", len(events))
    # FileStreamSink writes each value as Java prints the map JsonConverter made of the JSON object
    assert len(lines) == len(events) and sorted(_event_ids(lines)) == sorted(e.event_id for e in events)


def _file_sink_lines(settings, tmp_path, topic: str, expected: int, worker: dict | None = None) -> list[str]:
    """A standalone Kafka Connect worker's FileStreamSink of `topic`: the file's lines once `expected` arrived."""
    from devkit.connect import ConnectStandalone
    from devkit.ports import free_port

    out = tmp_path / "connect" / "out.txt"
    sink = {
        "name": "to-file",
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "file": str(out),
    }

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    bootstrap = settings.kafka.bootstrap_servers
    with ConnectStandalone(tmp_path / "connect", bootstrap, free_port(), [sink], worker=worker) as connect:
        wait_until(
            lambda: len(lines()) >= expected or not connect.alive(),
            120,
            lambda: f"{expected} lines from Kafka Connect; its log:\n{connect.log_tail()}",
        )
        assert connect.alive(), connect.log_tail()
    return lines()


def _event_ids(lines: list[str]) -> list[str]:
    import re

    return [m.group(1) for line in lines if (m := re.search(r"event_id=([0-9a-f-]+)", line))]


def test_kafka_connect_reads_registry_framed_detections_with_apicurios_avro_converter(
    settings, schema_registry_url, tmp_path
):
    """Registry-framed detections (the Confluent wire format, the schema in the local Apicurio Registry) read by a
    standalone Kafka Connect worker through Apicurio's own AvroConverter (Maven Central, a Connect plugin): every
    event reaches the file sink once, as a Connect struct with the schema's fields."""
    from devkit.connect import install_plugin

    reg = settings.kafka.schema_registry.model_copy(update={"url": schema_registry_url, "framing": "registry"})
    codec = EventCodec().use_registry(SchemaRegistry(reg), write_topic=settings.topics.detections)
    events = make_events(20, cameras=2)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for e in events:
        producer.send(settings.topics.detections, key=e.camera_id.encode(), value=codec.encode(e))
    producer.flush()
    producer.close()
    v2 = schema_registry_url.replace("/apis/ccompat/v7", "/apis/registry/v2")
    worker = {
        "plugin.path": str(install_plugin("apicurio-converter")),
        "value.converter": "io.apicurio.registry.utils.converter.AvroConverter",
        "value.converter.apicurio.registry.url": v2,
        # the Confluent wire format: a 4-byte id, the registry's content id (what its ccompat API hands out)
        "value.converter.apicurio.registry.as-confluent": "true",
        "value.converter.apicurio.registry.use-id": "contentId",
    }
    lines = _file_sink_lines(settings, tmp_path, settings.topics.detections, len(events), worker)
    assert len(lines) == len(events) and sorted(_event_ids(lines)) == sorted(e.event_id for e in events), lines[:2]
    assert lines[0].startswith("Struct{"), lines[0][:200]


def test_kafkajs_reads_the_json_mirror(settings):
    """A Node consumer (kafkajs from npm) reads detections.json: every event once, keyed by camera."""
    from devkit.kafkajs import read_json_topic

    events = _publish(settings, None, n=24)
    mirror, thread = _mirror(settings, None)
    thread.start()
    wait_until(lambda: mirror.stats.mirrored >= len(events), 60, "all mirrored")
    thread.stop()
    got = read_json_topic(settings.kafka.bootstrap_servers, settings.topics.detections + ".json", len(events))
    assert sorted(r["value"]["event_id"] for r in got) == sorted(e.event_id for e in events)
    assert all(r["key"] == r["value"]["camera_id"] for r in got)
