"""One camera's analytics on synthetic detection streams: exact crossings, entries, exits, dwell and occupancy."""

from __future__ import annotations

from collections import Counter

import pytest

from analytics.camera import CameraProcessor
from analytics.settings import CameraAnalyticsSettings
from schemas import Detection, DetectionEvent

W, H, FRAME_MS, T0 = 640, 480, 200, 1_764_000_000_000


def frame(seq: int, boxes: list[tuple[float, float, float, float]], label: str = "person", ts_ms: int | None = None):
    return DetectionEvent(
        event_id=f"e{seq}",
        camera_id="cam",
        frame_sequence=seq,
        capture_ts_ms=T0 + seq * FRAME_MS if ts_ms is None else ts_ms,
        inference_ts_ms=0,
        model_name="m",
        model_version="1",
        inference_latency_ms=1.0,
        frame_width=W,
        frame_height=H,
        detections=tuple(Detection(label, 0.9, b) for b in boxes),
    )


def walker(step: int, y: float = 0.4, x0: float = 0.1, dx: float = 0.02, size: float = 0.08):
    x = x0 + step * dx
    return (x, y, x + size, y + size * 1.5)


def processor(**camera) -> CameraProcessor:
    base = {"id": "cam", "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}]}
    return CameraProcessor(CameraAnalyticsSettings.model_validate({**base, **camera}))


def run(p: CameraProcessor, frames) -> list:
    return [e for f in frames for e in p.process(f)]


def kinds(events) -> Counter:
    return Counter(e.kind for e in events)


def test_one_walker_crossing_a_line_is_one_crossing_with_its_direction():
    events = run(processor(), [frame(i, [walker(i)]) for i in range(40)])
    crossings = [e for e in events if e.kind == "line_cross"]
    assert [(c.line, c.direction) for c in crossings] == [("gate", "in")]
    assert kinds(events)["start"] == 1
    back = run(processor(), [frame(i, [walker(39 - i)]) for i in range(40)])
    assert [(c.line, c.direction) for c in back if c.kind == "line_cross"] == [("gate", "out")]


def test_ten_walkers_on_parallel_paths_give_ten_tracks_and_ten_crossings():
    lanes = [0.02 + 0.09 * k for k in range(10)]
    events = run(processor(), [frame(i, [walker(i, y=y, size=0.05) for y in lanes]) for i in range(40)])
    crossings = [e for e in events if e.kind == "line_cross"]
    assert len(crossings) == 10 and {c.direction for c in crossings} == {"in"}
    assert len({c.track_id for c in crossings}) == 10
    assert kinds(events)["start"] == 10


def test_zone_entry_exit_dwell_and_occupancy_with_inertia():
    zone = {"name": "left", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 3}
    p = processor(lines=[], zones=[zone])
    events = run(p, [frame(i, [walker(i)]) for i in range(40)])
    enters = [e for e in events if e.kind == "zone_enter"]
    exits = [e for e in events if e.kind == "zone_exit"]
    assert len(enters) == 1 and len(exits) == 1 and enters[0].zone == exits[0].zone == "left"
    # confirmed on frame 1, inside on frames 1-3 -> entered at frame 3; the anchor (bottom centre, x = 0.14 +
    # 0.02 i) is on the zone's edge at i = 18 and outside from i = 19: outside on frames 19-21 -> exit at frame 21
    assert (enters[0].frame_sequence, exits[0].frame_sequence) == (3, 21)
    assert exits[0].dwell_ms == (21 - 3) * FRAME_MS
    occupancy = [(e.frame_sequence, e.occupancy) for e in events if e.kind == "occupancy"]
    assert occupancy == [(3, 1), (21, 0)]


def test_a_stationary_object_loiters_once():
    zone = {"name": "door", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], "inertia_frames": 1,
            "loiter_s": 2.0}  # fmt: skip
    events = run(processor(lines=[], zones=[zone]), [frame(i, [(0.3, 0.3, 0.4, 0.5)]) for i in range(50)])
    loiter = [e for e in events if e.kind == "loitering"]
    assert len(loiter) == 1 and loiter[0].dwell_ms >= 2000 and loiter[0].zone == "door"


def test_repeated_frames_are_skipped_so_nothing_is_duplicated():
    frames = [frame(i, [walker(i)]) for i in range(40)]
    redelivered = frames[:20] + frames[10:30] + frames[25:]  # at-least-once replays
    assert run(processor(), redelivered) == run(processor(), frames)


def test_a_gap_longer_than_lost_track_time_ends_the_track_and_a_new_one_starts():
    p = processor(lines=[], tracker={"lost_track_s": 1.0})
    first = [frame(i, [walker(i)]) for i in range(5)]
    later = [frame(i, [walker(i)], ts_ms=T0 + 10_000 + i * FRAME_MS) for i in range(5, 10)]
    events = run(p, first + later)
    ends = [e for e in events if e.kind == "end"]
    assert kinds(events)["start"] == 2 and len(ends) == 1 and ends[0].end_reason == "lost"


def test_an_occluded_object_keeps_its_track_within_lost_track_time():
    frames = [frame(i, [] if 10 <= i < 13 else [walker(i, dx=0.005)]) for i in range(30)]  # 0.6 s occlusion
    events = run(processor(lines=[], tracker={"lost_track_s": 2.0}), frames)
    assert kinds(events)["start"] == 1 and kinds(events)["end"] == 0


def test_finish_ends_every_track_and_ids_are_deterministic():
    frames = [frame(i, [walker(i), walker(i, y=0.8)]) for i in range(10)]
    a, b = processor(), processor()
    ev_a = run(a, frames) + a.finish()
    ev_b = run(b, frames) + b.finish()
    assert ev_a == ev_b, "the same detections give the same events, ids included"
    ends = [e for e in ev_a if e.kind == "end"]
    assert len(ends) == 2 and {e.end_reason for e in ends} == {"stream_ended"}


def test_bad_zone_settings_are_refused():
    with pytest.raises(ValueError, match="outside the frame"):
        processor(zones=[{"name": "z", "polygon": [[0, 0], [1.5, 0], [1, 1]]}])
    with pytest.raises(ValueError, match="unique"):
        processor(lines=[{"name": "a", "start": [0, 0], "end": [1, 1]}, {"name": "a", "start": [0, 1], "end": [1, 0]}])


def test_a_file_read_faster_than_real_time_is_tracked_on_its_presentation_times():
    import dataclasses

    paced = [frame(i, [walker(i)]) for i in range(40)]
    # the same frames read in a burst: capture times 1 ms apart, presentation times 200 ms apart
    burst = [dataclasses.replace(f, capture_ts_ms=T0 + i, pts_ms=i * FRAME_MS) for i, f in enumerate(paced)]
    a, b = run(processor(), paced), run(processor(), burst)
    assert [(e.kind, e.frame_sequence, e.direction) for e in a] == [(e.kind, e.frame_sequence, e.direction) for e in b]
    assert kinds(b)["start"] == 1 and kinds(b)["line_cross"] == 1
    assert b[0].ts_ms == T0 + 1, "events still carry capture times"


def test_a_looped_file_ends_its_tracks_when_its_clock_starts_over():
    import dataclasses

    first = [dataclasses.replace(frame(i, [walker(i)]), pts_ms=i * FRAME_MS) for i in range(20)]
    again = [dataclasses.replace(frame(20 + i, [walker(i)]), pts_ms=i * FRAME_MS) for i in range(20)]
    events = run(processor(), first + again)
    ends = [e for e in events if e.kind == "end"]
    assert kinds(events)["start"] == 2 and [e.end_reason for e in ends] == ["stream_ended"]


def test_an_object_standing_on_the_line_does_not_count_as_crossing_back_and_forth():
    def on_line(i: int) -> tuple[float, float, float, float]:
        dx = 0.004 if i % 2 else -0.004
        return (0.46 + dx, 0.4, 0.54 + dx, 0.52)

    jitter = [frame(i, [on_line(i)]) for i in range(40)]
    assert kinds(run(processor(), jitter))["line_cross"] == 0
    # walks up from the left, stands on the line for 20 frames, walks on to the right: one crossing, inbound
    up = [frame(i, [walker(i, x0=0.1)]) for i in range(18)]  # box centre from 0.14 to 0.48
    stand = [frame(18 + i, [on_line(i)]) for i in range(20)]
    on = [frame(38 + i, [walker(i, x0=0.47)]) for i in range(15)]
    crossings = [e for e in run(processor(), up + stand + on) if e.kind == "line_cross"]
    assert [c.direction for c in crossings] == ["in"]


def test_over_max_tracks_the_least_recently_seen_tracks_end_as_evicted():
    lanes = [0.05 + 0.15 * k for k in range(5)]
    events = run(
        processor(lines=[], max_tracks=3), [frame(i, [walker(i, y=y, size=0.05) for y in lanes]) for i in range(10)]
    )
    evicted = [e for e in events if e.kind == "end" and e.end_reason == "evicted"]
    assert len(evicted) >= 2 and all(e.track_id for e in evicted)


def test_a_tracks_identity_is_an_area_weighted_vote_published_as_an_update():
    """A face walks toward the camera (its box grows): misread as bob twice while small, then ada three times
    while large. The vote (summed box areas) turns to ada; `unknown` and unrecognised frames do not vote."""
    import dataclasses

    def face(step: int, who: str | None) -> DetectionEvent:
        size = 0.04 + 0.03 * step
        f = frame(step, [(0.3, 0.3, 0.3 + size, 0.3 + size)], label="face")
        return dataclasses.replace(f, detections=(dataclasses.replace(f.detections[0], identity=who),))

    who = [None, "bob", "bob", "unknown", "ada", "ada", "ada", None]
    p = processor()
    events = run(p, [face(i, w) for i, w in enumerate(who)])
    lifecycle = [(e.kind, e.identity) for e in events if e.kind in ("start", "update")]
    # The track is confirmed on the tracker's second frame, already read as bob; `unknown` changes nothing.
    assert lifecycle == [("start", "bob"), ("update", "ada")], lifecycle
    (track,) = p.tracks.values()
    assert track.identity == "ada" and set(track.votes) == {"ada", "bob"} and track.votes["ada"] > track.votes["bob"]
    assert {e.identity for e in p.finish() if e.kind == "end"} == {"ada"}


def test_a_tracks_plate_is_its_most_confident_read_published_as_an_update():
    """A car's plate read on several frames: unsure misreads, then a sure read. The track keeps the read with the
    highest plate_read confidence (the detection's own score when there is none), publishes it as an update when it
    changes, and keeps it in its state."""
    import dataclasses

    from analytics.state import StateCodec, restore, snapshot
    from schemas.types import PLATE_READ, Attribute

    def car(step: int, text: str | None, read: float | None) -> DetectionEvent:
        f = frame(step, [(0.2 + 0.01 * step, 0.3, 0.5 + 0.01 * step, 0.6)], label="car")
        attrs = (Attribute(PLATE_READ, read),) if read is not None else ()
        return dataclasses.replace(f, detections=(dataclasses.replace(f.detections[0], text=text, attributes=attrs),))

    # (the tracker confirms a track on its second frame: the first frame's read is not the track's)
    reads = [("XX", 0.99), ("A812CDE", 0.55), (None, None), ("AB12CDE", 0.97), ("AB12COE", 0.6), ("AB12CDE", 0.9)]
    p = processor()
    events = run(p, [car(i, t, s) for i, (t, s) in enumerate(reads)])
    lifecycle = [(e.kind, e.text) for e in events if e.kind in ("start", "update")]
    assert lifecycle == [("start", "A812CDE"), ("update", "AB12CDE")], lifecycle
    (track,) = p.tracks.values()
    assert (track.text, track.text_score) == ("AB12CDE", 0.97)
    codec = StateCodec()
    (again,) = restore(p.settings, codec.decode(codec.encode(snapshot(p, 0)))).tracks.values()
    assert (again.text, again.text_score) == ("AB12CDE", 0.97)
    assert {e.text for e in p.finish() if e.kind == "end"} == {"AB12CDE"}


# -- gating: frames the model skipped (nothing moved) or saw only in regions around motion ------------------------
GW, GH = 1280, 720


def _scene(i: int) -> list[tuple[float, float, float, float]]:
    """B stands in the left zone for the whole minute; A walks right across the gate (frames 10-50), stands there
    (50-200), walks back (200-240) and stands in the left zone to the end (300 frames, 60 s at 5 fps)."""
    standing_b = (0.1, 0.6, 0.16, 0.8)

    def a_at(x: float) -> tuple[float, float, float, float]:
        return (x, 0.2, x + 0.06, 0.4)

    if i < 10:
        return [standing_b]
    if i < 50:
        return [standing_b, a_at(0.2 + 0.015 * (i - 10))]
    if i < 200:
        return [standing_b, a_at(0.8)]
    if i < 240:
        return [standing_b, a_at(0.8 - 0.015 * (i - 200))]
    return [standing_b, a_at(0.2)]


def _event(i: int, boxes, look: str = "whole", regions=()) -> DetectionEvent:
    ts = T0 + i * FRAME_MS
    dets = tuple(Detection("person", 0.9, b) for b in boxes)
    return DetectionEvent(f"g{i}", "cam", i, ts, ts, "m", "1", 1.0, GW, GH, dets, look=look, regions=regions)


def _gated(i: int) -> DetectionEvent:
    """What inference publishes with gating: motion where a box changed since the last frame, the model on the
    regions gating.plan makes of it (only objects wholly inside a region found), none when nothing moved, the
    whole frame first and every 10 s."""
    from inference.gating import GatingSettings, plan
    from schemas import Motion

    now = _scene(i)
    if i % 50 < 3:  # a full look spans three frames (ingest's motion.full_look_frames)
        return _event(i, now)
    before = _scene(i - 1)
    moved = [
        tuple(map(min, a[:2], b[:2])) + tuple(map(max, a[2:], b[2:]))
        for a, b in zip(before, now, strict=False)
        if a != b
    ]
    moved += now[len(before) :]
    p = plan(Motion(tuple(moved)), GW, GH, 416, GatingSettings())
    if p.look == "none":
        return _event(i, [], look="none")
    if p.look == "whole":
        return _event(i, now)
    regions = p.regions_norm(GW, GH)
    seen = [b for b in now if any(r[0] <= b[0] and r[1] <= b[1] and b[2] <= r[2] and b[3] <= r[3] for r in regions)]
    return _event(i, seen, look="regions", regions=regions)


def _facts(events) -> list[tuple]:
    return [(e.kind, e.track_id, e.frame_sequence, e.zone, e.line, e.direction, e.dwell_ms, e.occupancy)
            for e in events if e.kind != "update"]  # fmt: skip


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_gated_frames_give_the_same_tracks_crossings_entries_and_dwell_as_ungated(tracker):
    zone = {"name": "left", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 2}
    settings = {"zones": [zone], "tracker": {"kind": tracker}}
    gated_stream = [_gated(i) for i in range(300)]
    looks = Counter(e.look for e in gated_stream)
    assert looks["none"] > 200 and looks["regions"] >= 70 and looks["whole"] == 18  # the stream is mostly still
    ungated = run(processor(**settings), [_event(i, _scene(i)) for i in range(300)])
    gated = run(processor(**settings), gated_stream)
    assert _facts(gated) == _facts(ungated)
    assert kinds(gated)["start"] == 2 and [e.direction for e in gated if e.kind == "line_cross"] == ["in", "out"]


def test_a_person_standing_still_for_a_minute_unlooked_keeps_one_track_and_its_dwell():
    zone = {"name": "door", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 1}
    p = processor(lines=[], zones=[zone])
    still = (0.1, 0.6, 0.16, 0.8)
    looked = [_event(i, [still]) for i in range(3)]  # the camera's first full look: three frames
    stream = looked + [_event(i, [], look="none") for i in range(3, 300)] + [_event(300, [])]
    events = run(p, stream)
    assert kinds(events)["start"] == 1 and kinds(events)["end"] == 0
    (track,) = p.tracks.values()
    assert track.zones["door"].entered_ms is not None and p._clock - track.zones["door"].entered_ms >= 59_000
    # without keeping them, the same frames are empty ones: the track is lost after lost_track_s
    off = processor(lines=[], zones=[zone], tracker={"keep_unlooked": False})
    assert kinds(run(off, stream))["end"] == 1


def test_a_track_the_full_look_no_longer_finds_is_not_kept_and_ends():
    """A detection seen on the first full look (a poster taken for a person, or someone who left unseen): frames
    the model skips keep it, but once a later full look misses it three times in a row it ages like any lost
    track, instead of being kept at its last box for ever."""
    p = processor(lines=[])
    ghost = (0.6, 0.3, 0.66, 0.5)
    stream = [_event(i, [ghost]) for i in range(3)]  # the first full look finds it
    stream += [_event(i, [], look="none") for i in range(3, 50)]  # nothing moves: kept
    stream += [_event(i, []) for i in range(50, 53)]  # the periodic full look: not there
    stream += [_event(i, [], look="none") for i in range(53, 80)]  # still nothing moves
    events = run(p, stream)
    ends = [e for e in events if e.kind == "end"]
    assert kinds(events)["start"] == 1 and len(ends) == 1 and ends[0].end_reason == "lost"
    # lost_track_s (2 s) after its last sighting, on frame 49 (10 frames at 200 ms)
    assert ends[0].frame_sequence == 60


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_a_walker_gone_through_a_door_unlooked_is_one_track_that_ends(tracker):
    """A face walking fast (0.02 of the frame a frame, half its width) leaves through a door: the last region misses them and
    nothing moves after that, so the next frames are `none`. Their last box is fed on, and the tracker, which
    predicts them further on, may match it to no track: that box must not start a new track (one every few
    frames, before the fix). The walker stays one track, which the next full look misses and ends."""
    p = processor(tracker={"kind": tracker})
    stream = [_event(i, [walker(i, dx=0.02, size=0.04)]) for i in range(3)]
    stream += [
        _event(i, [walker(i, dx=0.02, size=0.04)], look="regions", regions=((0.0, 0.0, 1.0, 1.0),))
        for i in range(3, 30)
    ]
    stream += [_event(30, [], look="regions", regions=((0.6, 0.2, 1.0, 0.8),))]  # the door: looked, not there
    stream += [_event(i, [], look="none") for i in range(31, 50)]
    stream += [_event(i, []) for i in range(50, 53)]  # the periodic full look
    stream += [_event(i, [], look="none") for i in range(53, 80)]
    events = run(p, stream)
    assert kinds(events)["start"] == 1 and kinds(events)["line_cross"] == 1
    ends = [e for e in events if e.kind == "end"]
    assert len(ends) == 1 and ends[0].end_reason == "lost", ends
