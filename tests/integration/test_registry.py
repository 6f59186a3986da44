"""Schema-registry framing against a real registry (the project's local Apicurio Registry, Confluent-compatible API):
subjects and compatibility, evolution, refusal before any write, and a running pipeline switching framing."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from devkit.topics import read_all, wait_until
from inference.worker import InferenceWorker
from ingest.worker import IngestWorker
from schemas import EventCodec
from schemas.codec import NotSingleObjectError, RegistryLookupError, load_schema, released_versions
from schemas.registry import SchemaRegistry, SchemaRegistryError, subject
from sink.worker import SinkWorker
from tests.conftest import WorkerThread
from tests.unit.test_codec import make_event
from visionstream.settings import SchemaRegistrySettings

pytestmark = pytest.mark.integration


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_event_schema_registers_under_the_topic_subject_with_backward_compatibility(schema_registry_url):
    topic = f"reg-{uuid.uuid4().hex[:8]}.detections"
    registry = SchemaRegistry(SchemaRegistrySettings(url=schema_registry_url, framing="registry"))
    codec = EventCodec().use_registry(registry, write_topic=topic)
    data = codec.encode(make_event())
    schema_id = int.from_bytes(data[1:5], "big")
    assert data[0] == 0 and codec.codec.framing == "registry"
    assert _get(f"{schema_registry_url}/subjects/{subject(topic)}/versions") == [1]
    assert _get(f"{schema_registry_url}/config/{subject(topic)}")["compatibilityLevel"] == "BACKWARD"
    assert json.loads(_get(f"{schema_registry_url}/schemas/ids/{schema_id}")["schema"]) == load_schema(
        "detection_event"
    )
    # a reader with the registry, in another process (no cache): the same event
    reader = EventCodec().use_registry(SchemaRegistry(SchemaRegistrySettings(url=schema_registry_url)))
    same = EventCodec().decode(EventCodec().encode(make_event()))  # floats are Avro floats either way
    assert reader.decode(data) == same
    # a reader without one cannot read it and says why (the roles dead-letter it with that reason)
    with pytest.raises(NotSingleObjectError, match="set kafka.schema_registry.url"):
        EventCodec().decode(data)
    # an id the registry does not have: the record is refused with why (the roles dead-letter it)
    with pytest.raises(RegistryLookupError, match="not in the registry"):
        reader.decode(b"\x00" + (987654).to_bytes(4, "big") + data[5:])
    # single-object records still decode with the registry reader
    assert reader.decode(EventCodec().encode(make_event())) == same


def test_evolution_registers_the_next_version_and_old_records_read_with_the_new_schema(schema_registry_url):
    """detection_event v4 (released) is on the subject; v5 (current, adds fields with defaults) registers as a new
    version under BACKWARD, and a v4-framed record decodes with today's reader."""
    from schemas.codec import SingleObjectCodec

    topic = f"reg-{uuid.uuid4().hex[:8]}.detections"
    registry = SchemaRegistry(SchemaRegistrySettings(url=schema_registry_url, framing="registry"))
    v4 = released_versions("detection_event")[-1]
    old = SingleObjectCodec(v4)
    old.use_registry(registry, write_topic=topic)
    record = {k: v for k, v in make_event().to_record().items() if k in {f["name"] for f in v4["fields"]}}
    old_bytes = old.encode(record)
    new = EventCodec().use_registry(registry, write_topic=topic)
    assert _get(f"{schema_registry_url}/subjects/{subject(topic)}/versions") == [1, 2]
    decoded = new.decode(old_bytes)
    assert decoded.event_id == make_event().event_id and decoded.look == "whole"  # v5's default


def test_an_incompatible_schema_is_refused_before_anything_is_written(schema_registry_url):
    topic = f"reg-{uuid.uuid4().hex[:8]}.detections"
    registry = SchemaRegistry(SchemaRegistrySettings(url=schema_registry_url, framing="registry"))
    EventCodec().use_registry(registry, write_topic=topic)
    breaking = load_schema("detection_event")
    breaking["fields"] = [*breaking["fields"], {"name": "site", "type": "string"}]  # required, no default
    from schemas.codec import SingleObjectCodec

    with pytest.raises(SchemaRegistryError, match="refused"):
        SingleObjectCodec(breaking).use_registry(registry, write_topic=topic)
    assert _get(f"{schema_registry_url}/subjects/{subject(topic)}/versions") == [1]


def test_an_unreachable_registry_is_a_clear_error_at_start():
    settings = SchemaRegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7", framing="registry", timeout_s=2)
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        EventCodec().use_registry(SchemaRegistry(settings), write_topic="anything")


def test_a_running_pipeline_switches_to_registry_framing_without_a_stop(
    settings, schema_registry_url, mtcnn_detector, sample_clip
):
    """The sink keeps running; inference writes the first half of the clip single-object, then restarts with
    registry framing for the second half. Every frame is stored once; both framings are on the topic."""
    reg = settings.kafka.schema_registry.model_copy(update={"url": schema_registry_url})
    kafka = settings.kafka.model_copy(update={"schema_registry": reg})
    framed_kafka = kafka.model_copy(update={"schema_registry": reg.model_copy(update={"framing": "registry"})})
    s = settings.model_copy(update={"kafka": kafka})
    n = len(sample_clip.faces_xyxy_norm)
    sink = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    sink.start()
    ingest = s.ingest.model_copy(update={"source": str(sample_clip.path)})
    stats = IngestWorker(ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event)
    assert stats.published == n
    half = n // 2
    # the first inference worker stops after half the frames
    first = WorkerThread(
        InferenceWorker(s.inference.model_copy(update={"batch_size": 1}), s.kafka, s.topics, detector=mtcnn_detector)
    )
    first.start()
    wait_until(lambda: sink.worker.stats.stored >= half, 120, "half the frames stored")
    first.stop()
    second = WorkerThread(InferenceWorker(s.inference, framed_kafka, s.topics, detector=mtcnn_detector))
    second.start()
    wait_until(lambda: sink.worker.stats.stored >= n, 120, lambda: f"{n} stored ({sink.worker.stats})")
    second.stop()
    sink_stats = sink.stop()
    assert sink_stats.stored == n and sink_stats.dead_lettered == 0 and sink_stats.duplicates == 0
    records = read_all(s.kafka.bootstrap_servers, s.topics.detections, n)
    firsts = {r.value[:1] for r in records}
    assert firsts == {b"\xc3", b"\x00"}, firsts
    assert subject(s.topics.detections) in _get(f"{schema_registry_url}/subjects")


def test_the_face_gallery_is_written_registry_framed_and_read_back(settings, schema_registry_url):
    """`visionstream faces enroll` with registry framing: the enrolment is registered under <faces topic>-value
    and read back by the gallery readers (inference's follower and the console use decode_gallery the same way)."""
    from schemas.faces import FaceEnrolment
    from visionstream.gallery import MODEL_ID, publish, read_gallery

    reg = settings.kafka.schema_registry.model_copy(update={"url": schema_registry_url, "framing": "registry"})
    kafka = settings.kafka.model_copy(update={"schema_registry": reg})
    ada = FaceEnrolment("ada", MODEL_ID, ((0.5,) * 128,), 1_764_000_000_000, ("ada.jpg",))
    publish(kafka, settings.topics, "ada", ada)
    raw = read_all(settings.kafka.bootstrap_servers, settings.topics.faces, 1)
    assert raw[0].value[:1] == b"\x00"
    assert read_gallery(kafka, settings.topics)["ada"].embeddings == ada.embeddings
    assert subject(settings.topics.faces) in _get(f"{schema_registry_url}/subjects")


def test_a_registry_outage_pauses_the_sink_and_dead_letters_nothing(settings, schema_registry_url):
    """Registry-framed events reach a sink whose registry is down: their schema cannot be fetched, so the sink
    retries the batch instead of dead-lettering it. When the registry answers again, every event is stored once."""
    from urllib.parse import urlsplit

    from devkit.events import make_events
    from devkit.forward import TcpForwarder
    from devkit.ports import free_port
    from devkit.topics import produce

    up = urlsplit(schema_registry_url)
    writer = EventCodec().use_registry(
        SchemaRegistry(SchemaRegistrySettings(url=schema_registry_url)), write_topic=settings.topics.detections
    )
    events = make_events(40)
    produce(settings.kafka.bootstrap_servers, settings.topics.detections,
            [(e.camera_id.encode(), writer.encode(e)) for e in events])  # fmt: skip
    port = free_port()
    reg = SchemaRegistrySettings(url=up._replace(netloc=f"127.0.0.1:{port}").geturl(), timeout_s=1)
    s = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"schema_registry": reg})})
    sink_s = s.sink.model_copy(update={"retry_backoff_s": 0.5, "retry_backoff_max_s": 1.0})
    sink = WorkerThread(SinkWorker(sink_s, s.kafka, s.topics))
    retries = _retries("sink")
    sink.start()
    forwarder = TcpForwarder(port, (up.hostname or "127.0.0.1", up.port or 80))
    try:
        wait_until(
            lambda: sink.worker.stats.dead_lettered > 0 or _retries("sink") >= retries + 2, 60, "the sink retrying"
        )
        assert (sink.worker.stats.stored, sink.worker.stats.dead_lettered) == (0, 0)
        forwarder.open()  # the registry is back
        wait_until(lambda: sink.worker.stats.stored >= len(events), 60, lambda: f"all stored ({sink.worker.stats})")
    finally:
        stats = sink.stop()
        forwarder.close()
    assert (stats.stored, stats.duplicates, stats.dead_lettered) == (len(events), 0, 0)


def _retries(role: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("visionstream_batch_retries_total", {"role": role}) or 0.0
