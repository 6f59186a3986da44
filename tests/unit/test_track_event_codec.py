"""The tracks topic's contract: round trips, deterministic ids, typed errors for anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import DecodeError, InvalidRecordError
from schemas.tracks import TRACK_EVENT_KINDS, TrackEvent, TrackEventCodec, track_event_id_for, track_id_for

CODEC = TrackEventCodec()


def crossing() -> TrackEvent:
    track = track_id_for("gate", 7, 120)
    return TrackEvent(
        event_id=track_event_id_for("gate", "line_cross", track, 131, "door"),
        camera_id="gate",
        kind="line_cross",
        label="person",
        frame_sequence=131,
        ts_ms=1_764_000_000_500,
        track_id=track,
        score=0.875,
        top_score=0.9375,
        box_xyxy_norm=(0.25, 0.5, 0.375, 0.875),
        first_seen_ms=1_764_000_000_000,
        last_seen_ms=1_764_000_000_500,
        zones=("queue",),
        zones_entered=("queue", "lobby"),
        line="door",
        direction="in",
    )


def test_every_field_round_trips():
    event = crossing()
    assert CODEC.decode(CODEC.encode(event)) == event
    occupancy = TrackEvent(
        event_id=track_event_id_for("gate", "occupancy", "queue/person", 131),
        camera_id="gate",
        kind="occupancy",
        label="person",
        frame_sequence=131,
        ts_ms=1,
        zone="queue",
        occupancy=3,
    )
    assert CODEC.decode(CODEC.encode(occupancy)) == occupancy


def test_ids_are_deterministic_and_distinct():
    assert track_id_for("gate", 7, 120) == track_id_for("gate", 7, 120)
    assert len({track_id_for("gate", 7, 120), track_id_for("gate", 7, 121), track_id_for("yard", 7, 120)}) == 3
    ids = {track_event_id_for("gate", kind, "t", 1, "z") for kind in TRACK_EVENT_KINDS}
    assert len(ids) == len(TRACK_EVENT_KINDS)


def test_an_unknown_kind_cannot_be_written():
    with pytest.raises(ValueError):
        CODEC.encode(TrackEvent("e", "gate", "teleport", "person", 1, 1))


@pytest.mark.parametrize(
    "change",
    [{"camera_id": "bad camera"}, {"label": "x" * 300}, {"box_xyxy_norm": (0.5, 0.0, 0.25, 1.0)}],
)
def test_values_outside_the_contract_are_invalid_records(change):
    fields = {name: getattr(crossing(), name) for name in TrackEvent.__slots__}
    event = TrackEvent(**{**fields, **change})
    with pytest.raises(InvalidRecordError):
        CODEC.decode(CODEC.encode(event))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_are_a_typed_error_or_an_event(data):
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)


def test_track_event_v1_messages_still_decode_and_v1_readers_read_v2_given_its_schema():
    """v2 adds `text` (the track's best plate read; optional, default null)."""
    import dataclasses

    from schemas.codec import SingleObjectCodec, load_schema, released_versions

    v1 = released_versions("track_event")[0]
    v2 = load_schema("track_event")
    assert "text" not in {f["name"] for f in v1["fields"]} and v2["fields"][-1]["name"] == "text"
    event = crossing()
    old_message = SingleObjectCodec(v1).encode({k: v for k, v in event.to_record().items() if k != "text"})
    assert CODEC.decode(old_message) == event  # an old producer's message, a new reader
    new_message = CODEC.encode(dataclasses.replace(event, text="AB12CDE", identity="Director"))
    read = SingleObjectCodec(v1, writer_schemas=[v2]).decode(new_message)  # an old consumer, told the new schema
    assert "text" not in read and read["identity"] == "Director" and read["line"] == "door"
    assert CODEC.decode(new_message).text == "AB12CDE"
