import dataclasses
import io
import json
import math
from pathlib import Path

import avro.io
import avro.schema
import pytest

from schemas import (
    Attribute,
    Detection,
    DetectionEvent,
    EventCodec,
    Frame,
    FrameCodec,
    InvalidRecordError,
    Keypoint,
    MalformedBodyError,
    NotSingleObjectError,
    Preprocessing,
    RegionOfInterest,
    SingleObjectCodec,
    UnknownSchemaError,
    check_event,
    check_frame,
    event_id_for,
    load_schema,
)
from schemas.codec import canonical_form, fingerprint

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def make_frame(**kw):
    base = dict(
        camera_id="cam-1",
        sequence=7,
        capture_ts_ms=1_764_000_000_123,
        width=640,
        height=480,
        image=b"\xff\xd8jpeg-bytes\xff\xd9",
        source_uri="file:///videos/a.mp4",
        preprocessing=Preprocessing(1280, 960, 85, RegionOfInterest(0, 0, 1280, 960), 0, 640),
        pts_ms=1400,
    )
    base.update(kw)
    return Frame(**base)


def make_event(n=3):
    dets = tuple(Detection("face", 0.5 + i / 10, (0.1, 0.2, 0.3, 0.4), (Keypoint("nose", 0.2, 0.3),)) for i in range(n))
    return DetectionEvent(
        event_id=event_id_for("cam-1", 7, 1_764_000_000_123, "mtcnn", "1.0.0"),
        camera_id="cam-1",
        frame_sequence=7,
        capture_ts_ms=1_764_000_000_123,
        inference_ts_ms=1_764_000_000_456,
        model_name="mtcnn",
        model_version="1.0.0",
        inference_latency_ms=123.5,
        frame_width=640,
        frame_height=480,
        detections=dets,
    )


def test_frame_round_trip_keeps_every_field():
    frame = make_frame()
    assert FrameCodec().decode(FrameCodec().encode(frame)) == frame


def test_event_round_trip_including_empty_detections():
    codec = EventCodec()
    ev = make_event()
    back = codec.decode(codec.encode(ev))
    assert back.event_id == ev.event_id and back.capture_ts_ms == ev.capture_ts_ms
    assert [d.label for d in back.detections] == ["face"] * 3
    assert back.detections[0].keypoints[0].name == "nose"
    assert back.detections[1].box_xyxy_norm == pytest.approx(ev.detections[1].box_xyxy_norm)
    empty = make_event(0)
    assert codec.decode(codec.encode(empty)).detections == ()


@pytest.mark.parametrize("name", ["frame", "detection_event"])
def test_header_is_spec_single_object_with_independently_computed_fingerprint(name):
    schema = load_schema(name)
    form = canonical_form(schema)
    # [PRIMITIVES] + [STRIP]: a timestamp-millis field is plain "long"; docs and defaults are gone.
    assert '{"name":"capture_ts_ms","type":"long"}' in form
    assert "logicalType" not in form and "doc" not in form and "default" not in form
    # CRC-64-AVRO from the other library's implementation, over the same canonical form.
    assert fingerprint(schema) == avro.schema._crc_64_fingerprint(form.encode())
    msg = FrameCodec().encode(make_frame()) if name == "frame" else EventCodec().encode(make_event())
    assert msg[:2] == b"\xc3\x01"
    assert msg[2:10] == SingleObjectCodec(schema).fingerprint
    # apache avro reads our bodies with the .avsc exactly as published (logical types included)
    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(schema)))
    rec = reader.read(avro.io.BinaryDecoder(io.BytesIO(msg[10:])))
    assert rec["camera_id"] == "cam-1"


def test_decode_errors_are_typed():
    codec = FrameCodec()
    good = codec.encode(make_frame())
    with pytest.raises(NotSingleObjectError):
        codec.decode(b"")
    with pytest.raises(NotSingleObjectError):
        codec.decode(b'{"json": true}')
    with pytest.raises(UnknownSchemaError) as info:
        codec.decode(good[:2] + b"\x00" * 8 + good[10:])
    assert info.value.fingerprint == b"\x00" * 8
    with pytest.raises(UnknownSchemaError):
        codec.decode(EventCodec().encode(make_event()))  # right format, wrong contract
    with pytest.raises(MalformedBodyError):
        codec.decode(good[:-3])
    with pytest.raises(MalformedBodyError):
        codec.decode(good + b"\x00")
    with pytest.raises(MalformedBodyError):
        codec.decode(good[:10] + b"\xff" * 16)


def test_reader_resolves_messages_written_with_an_older_schema():
    old = load_schema("frame")
    new = json.loads((SCHEMAS / "frame.avsc").read_text())
    new["fields"].append({"name": "note", "type": "string", "default": ""})
    reader = SingleObjectCodec(new, writer_schemas=[old])
    rec = reader.decode(FrameCodec().encode(make_frame()))
    assert rec["note"] == "" and rec["camera_id"] == "cam-1"


def test_event_id_is_deterministic_and_distinguishes_inputs():
    a = event_id_for("cam", 1, 1000, "mtcnn", "1.0.0")
    assert a == event_id_for("cam", 1, 1000, "mtcnn", "1.0.0")
    others = {
        event_id_for("cam2", 1, 1000, "mtcnn", "1.0.0"),
        event_id_for("cam", 2, 1000, "mtcnn", "1.0.0"),
        event_id_for("cam", 1, 1001, "mtcnn", "1.0.0"),
        event_id_for("cam", 1, 1000, "ssd", "1.0.0"),
        event_id_for("cam", 1, 1000, "mtcnn", "1.0.1"),
    }
    assert a not in others and len(others) == 5


def test_detection_event_v1_messages_still_decode_and_v1_readers_read_v2_given_its_schema():
    """Schema evolution both ways: v2 added `pts_ms` (optional, default null)."""
    from schemas.codec import load_schema, released_versions

    v1 = released_versions("detection_event")[0]
    v2 = load_schema("detection_event")
    assert "pts_ms" not in {f["name"] for f in v1["fields"]} and "pts_ms" in {f["name"] for f in v2["fields"]}
    event = DetectionEvent(
        "e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480, (Detection("face", 0.5, (0.25, 0.25, 0.5, 0.5)),)
    )  # exact in float32
    old_writer = SingleObjectCodec(v1)
    record_v1 = {k: v for k, v in event.to_record().items() if k not in ("pts_ms", "frame_ref")}
    decoded = EventCodec().decode(old_writer.encode(record_v1))  # an old producer's message, a new reader
    assert decoded == event and decoded.pts_ms is None
    new_message = EventCodec().encode(dataclasses.replace(event, pts_ms=600))
    old_reader = SingleObjectCodec(v1, writer_schemas=[v2])  # an old consumer, told the new writer schema
    read = old_reader.decode(new_message)
    assert "pts_ms" not in read and read["frame_sequence"] == 3 and read["detections"][0]["label"] == "face"


def test_detection_event_v2_messages_still_decode_and_v2_readers_read_v3_given_its_schema():
    """v3 adds identity, distance, text and attributes to each detection (optional, with defaults)."""
    from schemas.codec import load_schema, released_versions

    v2 = released_versions("detection_event")[1]
    v3 = load_schema("detection_event")
    new_fields = {"identity", "distance", "text", "attributes"}

    def detection_fields(schema):
        (det,) = [f for f in schema["fields"] if f["name"] == "detections"]
        return {f["name"] for f in det["type"]["items"]["fields"]}

    assert not new_fields & detection_fields(v2) and new_fields <= detection_fields(v3)
    plain = Detection("face", 0.5, (0.25, 0.25, 0.5, 0.5))
    event = DetectionEvent("e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480, (plain,), pts_ms=600)
    record_v2 = event.to_record()
    for d in record_v2["detections"]:
        for name in new_fields:
            del d[name]
    decoded = EventCodec().decode(SingleObjectCodec(v2).encode(record_v2))  # an old producer, a new reader
    assert decoded == event and decoded.detections[0].identity is None and decoded.detections[0].attributes == ()
    recognised = dataclasses.replace(
        plain, identity="ada", distance=0.25, text="AB12CDE", attributes=(Attribute("glasses", 0.75),)
    )
    message = EventCodec().encode(dataclasses.replace(event, detections=(recognised,)))
    assert EventCodec().decode(message).detections == (recognised,)  # exact in float32
    read = SingleObjectCodec(v2, writer_schemas=[v3]).decode(message)  # an old consumer, told the new schema
    assert read["detections"][0]["label"] == "face" and not new_fields & set(read["detections"][0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"identity": "x" * 300}, "identity is 300 characters"),
        ({"text": "x" * 300}, "text is 300 characters"),
        ({"distance": -1.0}, "distance -1.0"),
        ({"distance": math.nan}, "distance nan"),
        ({"attributes": ((Attribute("a", 1.5),))}, "score 1.5"),
        ({"attributes": tuple(Attribute("a", 0.5) for _ in range(65))}, "65 attributes"),
    ],
)
def test_v3_fields_outside_the_contract_are_invalid(change, message):
    detection = dataclasses.replace(Detection("face", 0.5, (0.25, 0.25, 0.5, 0.5)), **change)
    event = DetectionEvent("e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480, (detection,))
    with pytest.raises(InvalidRecordError, match=message):
        check_event(event)


def test_detection_event_v3_messages_still_decode_and_v3_readers_read_v4_given_its_schema():
    """v4 adds `frame_ref` (where the frame is on Kafka; optional, default null)."""
    from schemas import FrameRef
    from schemas.codec import released_versions

    v3 = released_versions("detection_event")[2]
    v4 = released_versions("detection_event")[3]
    assert "frame_ref" not in {f["name"] for f in v3["fields"]} and v4["fields"][-1]["name"] == "frame_ref"
    event = DetectionEvent("e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480,
                           (Detection("face", 0.5, (0.25, 0.25, 0.5, 0.5)),), pts_ms=600)  # fmt: skip
    old = {k: v for k, v in event.to_record().items() if k != "frame_ref"}
    decoded = EventCodec().decode(SingleObjectCodec(v3).encode(old))  # an old producer, a new reader
    assert decoded == event and decoded.frame_ref is None
    referenced = dataclasses.replace(event, frame_ref=FrameRef("frames", 2, 123456789012))
    v4_record = {k: v for k, v in referenced.to_record().items() if k not in ("look", "regions")}
    message = SingleObjectCodec(v4).encode(v4_record)
    assert EventCodec().decode(message).frame_ref == FrameRef("frames", 2, 123456789012)
    read = SingleObjectCodec(v3, writer_schemas=[v4]).decode(message)  # an old consumer, told the new schema
    assert "frame_ref" not in read and read["pts_ms"] == 600
    with pytest.raises(InvalidRecordError, match="negative"):
        EventCodec().decode(EventCodec().encode(dataclasses.replace(event, frame_ref=FrameRef("frames", -1, 0))))


def test_detection_event_v4_messages_still_decode_and_v4_readers_read_v5_given_its_schema():
    """v5 adds `look` (whole, regions, none; default whole) and `regions` (default empty)."""
    from schemas.codec import load_schema, released_versions

    v4 = released_versions("detection_event")[3]
    v5 = load_schema("detection_event")
    assert [f["name"] for f in v5["fields"]][-2:] == ["look", "regions"]
    assert not {"look", "regions"} & {f["name"] for f in v4["fields"]}
    event = DetectionEvent("e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480,
                           (Detection("person", 0.5, (0.25, 0.25, 0.5, 0.5)),), pts_ms=600)  # fmt: skip
    old = {k: v for k, v in event.to_record().items() if k not in ("look", "regions")}
    decoded = EventCodec().decode(SingleObjectCodec(v4).encode(old))  # an old producer, a new reader
    assert decoded == event and decoded.look == "whole" and decoded.regions == ()
    gated = dataclasses.replace(event, look="regions", regions=((0.0, 0.25, 0.5, 1.0),))
    message = EventCodec().encode(gated)
    assert EventCodec().decode(message) == gated
    read = SingleObjectCodec(v4, writer_schemas=[v5]).decode(message)  # an old consumer, told the new schema
    assert "look" not in read and read["detections"][0]["label"] == "person"
    none = dataclasses.replace(event, detections=(), look="none")
    assert EventCodec().decode(EventCodec().encode(none)).look == "none"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"look": "some"}, "look 'some'"),
        ({"look": "none"}, "did not look"),
        ({"regions": ((0.5, 0.0, 0.25, 1.0),)}, "regions\\[0\\]"),
        ({"regions": ((0.0, 0.0, 0.5, 0.5),) * 257}, "257 regions"),
    ],
)
def test_v5_fields_outside_the_contract_are_invalid(change, message):
    event = DetectionEvent("e1", "cam", 3, 1_000, 1_040, "m", "1", 40.0, 640, 480,
                           (Detection("person", 0.5, (0.25, 0.25, 0.5, 0.5)),))  # fmt: skip
    with pytest.raises(InvalidRecordError, match=message):
        check_event(dataclasses.replace(event, **change))


def test_frame_v1_messages_still_decode_and_v1_readers_read_v2_given_its_schema():
    """Frame v2 adds `motion` (null: ingest did not look, so the model looks at the whole frame)."""
    from schemas import Motion
    from schemas.codec import load_schema, released_versions

    (v1,) = released_versions("frame")
    v2 = load_schema("frame")
    assert v2["fields"][-1]["name"] == "motion" and "motion" not in {f["name"] for f in v1["fields"]}
    frame = Frame("cam", 7, 1_000, 64, 48, b"\xff\xd8jpeg", "file:///x", Preprocessing(64, 48, 85), pts_ms=40)
    old = {k: v for k, v in frame.to_record().items() if k != "motion"}
    decoded = FrameCodec().decode(SingleObjectCodec(v1).encode(old))  # an old ingest, a new reader
    assert decoded == frame and decoded.motion is None
    moving = dataclasses.replace(frame, motion=Motion(((0.125, 0.25, 0.375, 0.5),), full_look=True))
    message = FrameCodec().encode(moving)
    assert FrameCodec().decode(message).motion == Motion(((0.125, 0.25, 0.375, 0.5),), True)
    read = SingleObjectCodec(v1, writer_schemas=[v2]).decode(message)  # an old worker, told the new schema
    assert "motion" not in read and read["image"] == b"\xff\xd8jpeg"
    with pytest.raises(InvalidRecordError, match="motion.boxes"):
        check_frame(dataclasses.replace(frame, motion=Motion(((0.5, 0.5, 0.2, 0.9),))))
