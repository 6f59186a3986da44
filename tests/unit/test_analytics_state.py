"""A camera's state written to the changelog and read back continues exactly like the processor that wrote it."""

from __future__ import annotations

import pytest

from analytics.camera import CameraProcessor
from analytics.settings import CameraAnalyticsSettings
from analytics.state import StateCodec, StateError, from_value, restore, snapshot, to_value
from schemas import DecodeError
from tests.unit.test_analytics_camera import frame, walker

SETTINGS = {
    "id": "cam",
    "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
    "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia_frames": 2, "loiter_s": 1.0}],
}


def stream(n: int):
    """Five walkers at different speeds and lanes, two of them occluded for a while, one standing still."""
    frames = []
    for i in range(n):
        boxes = [walker(i, y=0.05 + 0.15 * k, dx=0.01 + 0.004 * k, size=0.06) for k in range(4)]
        if 20 <= i < 26:
            boxes = boxes[:2]  # two walkers behind a pillar
        boxes.append((0.3, 0.8, 0.36, 0.89))  # someone standing in the zone
        frames.append(frame(i, boxes))
    return frames


@pytest.mark.parametrize("kind", ["bytetrack", "ocsort", "sort"])
@pytest.mark.parametrize("cut", [1, 17, 23, 40])
def test_restored_processor_continues_exactly(kind, cut):
    settings = CameraAnalyticsSettings.model_validate({**SETTINGS, "tracker": {"kind": kind}})
    frames = stream(70)
    whole = CameraProcessor(settings)
    expected = [e for f in frames for e in whole.process(f)]
    first = CameraProcessor(settings)
    before = [e for f in frames[:cut] for e in first.process(f)]
    codec = StateCodec()
    record = codec.decode(codec.encode(snapshot(first, detections_offset=cut - 1)))
    second = restore(settings, record)
    after = [e for f in frames[:cut] + frames[cut:] for e in second.process(f)]  # repeats are skipped
    assert before + after == expected
    assert {e.kind for e in expected} >= {"start", "line_cross", "zone_enter", "zone_exit", "loitering", "occupancy"}


def test_state_holds_no_class_outside_the_tracker_package():
    evil = {"t": "object", "s": "os:system", "items": []}
    with pytest.raises(StateError, match="not one a tracker state may hold"):
        from_value(evil)
    with pytest.raises(StateError):
        from_value({"t": "class", "s": "trackers.core.base:os"})
    with pytest.raises(StateError, match="dtype"):
        from_value({"t": "ndarray", "s": "object", "shape": [1], "data": b"\0" * 8})
    with pytest.raises(StateError, match="shape"):
        from_value({"t": "ndarray", "s": "float64", "shape": [3], "data": b"\0" * 8})
    with pytest.raises(StateError, match="attribute"):
        from_value(
            {"t": "object", "s": "trackers.utils.iou:IoU", "items": [{"t": "str", "s": "__class__"}, {"t": "none"}]}
        )
    with pytest.raises(ValueError, match="cannot record"):
        to_value(object())


def test_bytes_that_are_not_a_state_record_are_refused():
    with pytest.raises(DecodeError):
        StateCodec().decode(b"\xc3\x01" + b"\x00" * 8 + b"junk")


def test_state_v1_records_still_restore_and_the_vote_survives_a_restore():
    """analytics_state v2 adds a track's identity and votes (with defaults): a v1 record (written before) restores
    with no identity, and a v2 one brings the vote back."""
    import dataclasses

    from schemas.codec import SingleObjectCodec, released_versions

    settings = CameraAnalyticsSettings.model_validate({"id": "cam"})
    p = CameraProcessor(settings)
    for e in stream(6):
        p.process(
            dataclasses.replace(e, detections=tuple(dataclasses.replace(d, identity="ada") for d in e.detections))
        )
    record = snapshot(p, 6)
    restored = restore(settings, StateCodec().decode(StateCodec().encode(record)))
    assert {t.identity for t in restored.tracks.values()} == {"ada"}
    assert [t.votes for t in restored.tracks.values()] == [t.votes for t in p.tracks.values()]
    v1 = released_versions("analytics_state")[0]
    old = {
        **record,
        "tracks": [{k: v for k, v in t.items() if k not in ("identity", "votes")} for t in record["tracks"]],
    }
    message = SingleObjectCodec(v1).encode(old)
    back = restore(settings, StateCodec().decode(message))
    assert {t.identity for t in back.tracks.values()} == {None} and all(not t.votes for t in back.tracks.values())
    v2 = released_versions("analytics_state")[1]  # before the best plate read
    older = {
        **record,
        "tracks": [{k: v for k, v in t.items() if k not in ("text", "text_score")} for t in record["tracks"]],
    }
    back = restore(settings, StateCodec().decode(SingleObjectCodec(v2).encode(older)))
    assert {t.identity for t in back.tracks.values()} == {"ada"}
    assert all(t.text is None and t.text_score == 0.0 for t in back.tracks.values())


def test_state_v3_records_restore_with_no_missed_looks_and_v4_keeps_them():
    """analytics_state v4 adds each track's missed_looks (motion gating), default 0."""
    from schemas.codec import SingleObjectCodec, released_versions

    settings = CameraAnalyticsSettings.model_validate({"id": "cam"})
    p = CameraProcessor(settings)
    for e in stream(6):
        p.process(e)
    for t in p.tracks.values():
        t.missed_looks = 2
    record = snapshot(p, 6)
    restored = restore(settings, StateCodec().decode(StateCodec().encode(record)))
    assert [t.missed_looks for t in restored.tracks.values()] == [2] * len(p.tracks) and p.tracks
    v3 = released_versions("analytics_state")[2]
    old = {**record, "tracks": [{k: v for k, v in t.items() if k != "missed_looks"} for t in record["tracks"]]}
    back = restore(settings, StateCodec().decode(SingleObjectCodec(v3).encode(old)))
    assert [t.missed_looks for t in back.tracks.values()] == [0] * len(p.tracks)
