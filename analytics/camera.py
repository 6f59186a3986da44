"""One camera's video analytics: detection events in frame order -> tracks, zone, line and occupancy events.

Tracking is the `trackers` package's (ByteTrack by default); zone membership and line crossings are
`supervision`'s PolygonZone and LineZone on the box's anchor point. This module adds what turns them into events:
deterministic ids, the track lifecycle by time, zone inertia and dwell, and occupancy counts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker, OCSORTTracker, SORTTracker

from analytics.settings import CameraAnalyticsSettings, LineSettings, ZoneSettings
from schemas import Detection, DetectionEvent
from schemas.tracks import TrackEvent, track_event_id_for, track_id_for
from schemas.types import LOOK_NONE, LOOK_WHOLE, PLATE_READ, UNKNOWN_IDENTITY, unit_box

ANCHORS = {
    "bottom_center": sv.Position.BOTTOM_CENTER,
    "center": sv.Position.CENTER,
    "top_center": sv.Position.TOP_CENTER,
}
# A better top score is news (an `update`) only when it improves by this much.
TOP_SCORE_STEP = 0.02
# Looks in a row that miss a track before frames the model skips stop keeping it at its last box (a full look
# spans three frames).
MISSED_LOOKS = 3


class At(Protocol):
    """The frame an event is attributed to."""

    @property
    def frame_sequence(self) -> int: ...

    @property
    def capture_ts_ms(self) -> int: ...


class Moment(NamedTuple):
    frame_sequence: int
    capture_ts_ms: int


@dataclass
class ZoneStay:
    inside_frames: int = 0  # consecutive frames with the anchor inside (toward entering)
    outside_frames: int = 0  # consecutive frames outside while counted in (toward exiting)
    entered_ms: int | None = None  # the camera's clock when the object came to count as in the zone
    loitering_reported: bool = False


@dataclass
class Track:
    track_id: str
    label: str
    first_sequence: int
    first_seen_ms: int  # capture times, as events report them
    last_seen_ms: int
    score: float
    top_score: float
    box: tuple[float, float, float, float]
    zones: dict[str, ZoneStay] = field(default_factory=dict)
    entered: list[str] = field(default_factory=list)
    last_clock_ms: int = 0  # the camera's clock when last seen: what lost-track time is measured on
    identity: str | None = None  # the winner of `votes`
    votes: dict[str, float] = field(default_factory=dict)  # identity -> summed box area of its recognitions
    text: str | None = None  # the best plate read: the most confident so far
    text_score: float = 0.0
    # Frames in a row the model looked where the track is (whole frame, or a region holding its box) without
    # finding it: past MISSED_LOOKS it is not kept at its last box on frames the model skips.
    missed_looks: int = 0

    def inside(self) -> tuple[str, ...]:
        return tuple(sorted(z for z, s in self.zones.items() if s.entered_ms is not None))


class CameraProcessor:
    """Feed it a camera's detection events in frame order; each call returns the track events they cause."""

    def __init__(self, settings: CameraAnalyticsSettings) -> None:
        self.settings = settings
        self.camera = settings.id
        self.last_sequence = -1
        self.last_ts_ms: int | None = None  # capture time of the last frame processed
        # The camera's clock: the frames' presentation time where the source has one (a file read faster than
        # real time is tracked at its own pace), else capture time. Tracking, lost time and dwell run on it.
        self.last_clock_ms: int | None = None
        self._clock = 0
        self.tracks: dict[int, Track] = {}  # by the tracker's own id
        self.occupancy: dict[tuple[str, str], int] = {}
        self._labels: dict[str, int] = {}  # the tracker works on class ids
        self._label_names: list[str] = []
        self._tracker = _make_tracker(settings)
        self._size: tuple[int, int] | None = None
        self._zones: dict[str, sv.PolygonZone] = {}
        self._lines: dict[str, sv.LineZone] = {}
        self._reset_pending = False

    def reconfigure(self, settings: CameraAnalyticsSettings) -> list[str]:
        """New zones, lines or tracker settings for this camera (a reloaded zones file); return what changed.

        Zones and lines take effect at the next frame (a removed zone's stays are dropped, so its occupancy
        falls to 0); a changed tracker ends every track at the next frame (reason `reconfigured`)."""
        old, self.settings = self.settings, settings
        changed = [
            k
            for k in ("zones", "lines", "anchor", "tracker", "expected_fps")
            if getattr(old, k) != getattr(settings, k)
        ]
        if "tracker" in changed or "expected_fps" in changed:
            self._reset_pending = True
        if {"zones", "lines", "anchor"} & set(changed):
            names = {z.name for z in settings.zones}
            for track in self.tracks.values():
                track.zones = {z: stay for z, stay in track.zones.items() if z in names}
            self._size = None  # rebuild the geometry (lines start a fresh crossing history)
        return changed

    # -- the one entry point -----------------------------------------------------------------------------------
    def process(self, event: DetectionEvent) -> list[TrackEvent]:
        if event.frame_sequence <= self.last_sequence:
            return []  # redelivered (at-least-once): already processed
        out: list[TrackEvent] = []
        now = self._clock = clock_ms(event)
        lost_ms = int(self.settings.tracker.lost_track_s * 1000)
        if self._reset_pending:
            out += self._end_all(event, "reconfigured")
            self._tracker, self._reset_pending = _make_tracker(self.settings), False
        elif self.last_clock_ms is not None and now < self.last_clock_ms:
            # The clock went back: a looped file started over, or the source was restarted.
            out += self._end_all(event, "stream_ended")
            self._tracker = _make_tracker(self.settings)
        elif self.last_clock_ms is not None and now - self.last_clock_ms > lost_ms:
            # A gap longer than a track may be lost (skipped or dead-lettered frames): nothing continues across it.
            out += self._end_all(event, "lost")
            self._tracker = _make_tracker(self.settings)
        self.last_sequence, self.last_ts_ms, self.last_clock_ms = event.frame_sequence, event.capture_ts_ms, now
        self._geometry(event.frame_width, event.frame_height)
        with warnings.catch_warnings():  # a duplicate capture time is handled by the tracker; no need to shout
            warnings.simplefilter("ignore", UserWarning)
            tracked = self._tracker.update(self._with_unseen(event, self._detections(event)), timestamp=now / 1000.0)
        kept = tracked.data.get("kept", np.zeros(len(tracked), bool))
        if kept.any():
            # A track fed at its last box is one the tracker already holds; if the tracker matched that box to no
            # track of ours (it predicted the object on: it was moving when last seen, and has left or stopped
            # unlooked), the box must not start a track. Ours then ages like any track not found.
            ids = tracked.tracker_id if tracked.tracker_id is not None else np.full(len(tracked), -1)
            tracked = tracked[~kept | np.array([int(t) in self.tracks for t in ids], bool)]
            kept = tracked.data.get("kept", np.zeros(len(tracked), bool))
        seen: set[int] = set()
        found: set[int] = set()  # by the model, not kept at their last box
        for i, tracker_id in enumerate(tracked.tracker_id if tracked.tracker_id is not None else ()):
            if tracker_id < 0:
                continue  # not confirmed yet
            seen.add(int(tracker_id))
            if not kept[i]:
                found.add(int(tracker_id))
        self._count_misses(event, found)
        for i, tracker_id in enumerate(tracked.tracker_id if tracked.tracker_id is not None else ()):
            if tracker_id >= 0:
                out += self._observe(event, int(tracker_id), tracked, i)
        zones_before = {tid: self.tracks[tid].inside() for tid in seen}
        out += self._zones_and_lines(event, tracked, seen)
        out += self._zone_updates(event, zones_before, out)
        out += self._end_lost(event, lost_ms)
        out += self._evict(event)
        out += self._occupancy(event)
        return out

    def finish(self, reason: str = "stream_ended") -> list[TrackEvent]:
        """End every track, as of the last frame processed: the stream ended (no events for a while), or the
        worker holds too many cameras (`evicted`)."""
        if self.last_ts_ms is None or self.last_clock_ms is None:
            return []
        self._clock = self.last_clock_ms
        at = Moment(self.last_sequence, self.last_ts_ms)
        return self._end_all(at, reason) + self._occupancy(at)

    # -- tracking ----------------------------------------------------------------------------------------------
    def _detections(self, event: DetectionEvent) -> sv.Detections:
        w, h = event.frame_width, event.frame_height
        if not event.detections:
            return sv.Detections.empty()
        xyxy = np.array([[d.box_xyxy_norm[0] * w, d.box_xyxy_norm[1] * h, d.box_xyxy_norm[2] * w,
                          d.box_xyxy_norm[3] * h] for d in event.detections], dtype=float)  # fmt: skip
        ids = np.array([self._label_id(d.label) for d in event.detections])
        # Carried through the tracker with each box: who a recogniser said it was (face identity, a known plate).
        identity = np.array([d.identity or "" for d in event.detections], dtype=object)
        text = np.array([d.text or "" for d in event.detections], dtype=object)
        text_score = np.array([read_score(d) for d in event.detections], dtype=float)
        return sv.Detections(
            xyxy=xyxy, confidence=np.array([d.score for d in event.detections]), class_id=ids,
            data={"identity": identity, "text": text, "text_score": text_score},
        )  # fmt: skip

    def _with_unseen(self, event: DetectionEvent, found: sv.Detections) -> sv.Detections:
        """On a frame the model did not look at wholly (look none, or regions around motion), each track it could
        not have seen (its last box not wholly inside a region) is fed at its last box: it did not move, as
        nothing moved there. So skipped frames move no track, age none, and a still object's dwell runs on."""
        if event.look == LOOK_WHOLE or not self.tracks or not self.settings.tracker.keep_unlooked:
            return found
        w, h = event.frame_width, event.frame_height
        unseen = [
            t
            for t in self.tracks.values()
            if t.missed_looks < MISSED_LOOKS and not any(_within(t.box, r) for r in event.regions)
        ]
        if not unseen:
            return found
        kept = sv.Detections(
            xyxy=np.array([[t.box[0] * w, t.box[1] * h, t.box[2] * w, t.box[3] * h] for t in unseen], dtype=float),
            confidence=np.array([t.score for t in unseen]),
            class_id=np.array([self._label_id(t.label) for t in unseen]),
            data={
                "identity": np.array([""] * len(unseen), dtype=object),
                "text": np.array([""] * len(unseen), dtype=object),
                "text_score": np.zeros(len(unseen)),
                "kept": np.ones(len(unseen), bool),
            },
        )
        if not len(found):
            return kept
        found.data["kept"] = np.zeros(len(found), bool)
        return sv.Detections.merge([found, kept])

    def _count_misses(self, event: DetectionEvent, found: set[int]) -> None:
        """Each track the model looked for in this frame (all of them on a whole look; on regions, those whose
        box a region holds) is found, or missed once more. A track missed on a whole full look (a false
        detection, or an object gone without motion) is then no longer kept at its last box, and ages."""
        if event.look == LOOK_NONE:
            return
        for tid, t in self.tracks.items():
            if tid in found:
                t.missed_looks = 0
            elif event.look == LOOK_WHOLE or any(_within(t.box, r) for r in event.regions):
                t.missed_looks += 1

    def _observe(self, event: DetectionEvent, tracker_id: int, tracked: sv.Detections, i: int) -> list[TrackEvent]:
        w, h = event.frame_width, event.frame_height
        x0, y0, x1, y1 = (float(v) for v in tracked.xyxy[i])
        box = unit_box(x0, y0, x1, y1, w, h)
        score = float(tracked.confidence[i]) if tracked.confidence is not None else 0.0
        label = self._label_names[int(tracked.class_id[i])] if tracked.class_id is not None else "object"
        track = self.tracks.get(tracker_id)
        now = event.capture_ts_ms
        recognised = str(tracked.data["identity"][i]) if "identity" in tracked.data else ""
        text = str(tracked.data["text"][i]) if "text" in tracked.data else ""
        text_score = float(tracked.data["text_score"][i]) if "text_score" in tracked.data else 0.0
        if track is None:
            tid = track_id_for(self.camera, tracker_id, event.frame_sequence)
            track = Track(tid, label, event.frame_sequence, now, now, score, score, box, last_clock_ms=self._clock)
            self.tracks[tracker_id] = track
            _vote(track, recognised, box)
            _best_read(track, text, text_score)
            return [self._lifecycle(event, track, "start")]
        track.last_seen_ms, track.last_clock_ms, track.score, track.box = now, self._clock, score, box
        changed = _vote(track, recognised, box)
        changed = _best_read(track, text, text_score) or changed
        if score >= track.top_score + TOP_SCORE_STEP or changed:
            track.top_score = max(track.top_score, score)
            return [self._lifecycle(event, track, "update")]
        return []

    def _zone_updates(
        self, event: At, before: dict[int, tuple[str, ...]], so_far: list[TrackEvent]
    ) -> list[TrackEvent]:
        """An `update` for each track whose zones changed in this frame (unless it started or got one already)."""
        told = {e.track_id for e in so_far if e.kind in ("start", "update")}
        out = []
        for tid in sorted(before):
            track = self.tracks[tid]
            if track.inside() != before[tid] and track.track_id not in told:
                out.append(self._lifecycle(event, track, "update"))
        return out

    def _end_lost(self, event: At, lost_ms: int) -> list[TrackEvent]:
        gone = [tid for tid, t in self.tracks.items() if self._clock - t.last_clock_ms > lost_ms]
        return [e for tid in gone for e in self._end(event, tid, "lost")]

    def _evict(self, event: At) -> list[TrackEvent]:
        extra = len(self.tracks) - self.settings.max_tracks
        if extra <= 0:
            return []
        oldest = sorted(self.tracks, key=lambda tid: self.tracks[tid].last_seen_ms)[:extra]
        return [e for tid in oldest for e in self._end(event, tid, "evicted")]

    def _end_all(self, event: At, reason: str) -> list[TrackEvent]:
        return [e for tid in list(self.tracks) for e in self._end(event, tid, reason)]

    def _end(self, event: At, tracker_id: int, reason: str) -> list[TrackEvent]:
        track = self.tracks.pop(tracker_id)
        out = [self._zone_event(event, track, z, "zone_exit") for z in track.inside()]
        for stay in track.zones.values():
            stay.entered_ms = None
        return out + [self._lifecycle(event, track, "end", end_reason=reason)]

    # -- zones and lines ---------------------------------------------------------------------------------------
    def _geometry(self, width: int, height: int) -> None:
        """Zones and lines in this frame size's pixels (rebuilt only when the size changes)."""
        if self._size == (width, height):
            return
        self._size = (width, height)
        anchor = [ANCHORS[self.settings.anchor]]
        self._zones = {
            z.name: sv.PolygonZone(
                polygon=np.array([[round(x * width), round(y * height)] for x, y in z.polygon]),
                triggering_anchors=anchor,
            )
            for z in self.settings.zones
        }
        self._lines = {
            ln.name: sv.LineZone(
                start=sv.Point(ln.start[0] * width, ln.start[1] * height),
                end=sv.Point(ln.end[0] * width, ln.end[1] * height),
                triggering_anchors=anchor,
                minimum_crossing_threshold=ln.min_crossing_frames,
            )
            for ln in self.settings.lines
        }

    def _zones_and_lines(self, event: DetectionEvent, tracked: sv.Detections, seen: set[int]) -> list[TrackEvent]:
        out: list[TrackEvent] = []
        confirmed, ids = _confirmed(tracked)
        for zone in self.settings.zones:
            inside: Any = self._zones[zone.name].trigger(confirmed) if ids else []
            now_in = {tid for tid, hit in zip(ids, inside, strict=True) if hit}
            for tracker_id in seen:
                track = self.tracks[tracker_id]
                if _applies(zone, track.label):
                    out += self._zone_step(event, track, zone, tracker_id in now_in)
        for line in self.settings.lines:
            # Called on empty frames too: the line ages the crossing history of objects no longer seen.
            crossed_in, crossed_out = self._lines[line.name].trigger(confirmed)
            for tid, went_in, went_out in zip(ids, crossed_in, crossed_out, strict=True):
                crosser = self.tracks.get(tid)
                if crosser is not None and (went_in or went_out) and _applies(line, crosser.label):
                    out.append(self._crossing(event, crosser, line, "in" if went_in else "out"))
        return out

    def _zone_step(self, event: At, track: Track, zone: ZoneSettings, inside: bool) -> list[TrackEvent]:
        stay = track.zones.setdefault(zone.name, ZoneStay())
        now = self._clock
        if inside:
            stay.outside_frames = 0
            stay.inside_frames += 1
            if stay.entered_ms is None and stay.inside_frames >= zone.inertia_frames:
                stay.entered_ms = now
                if zone.name not in track.entered:
                    track.entered.append(zone.name)
                return [self._zone_event(event, track, zone.name, "zone_enter")]
            if (
                stay.entered_ms is not None
                and zone.loiter_s is not None
                and not stay.loitering_reported
                and now - stay.entered_ms >= zone.loiter_s * 1000
            ):
                stay.loitering_reported = True
                return [self._zone_event(event, track, zone.name, "loitering")]
            return []
        stay.inside_frames = 0
        if stay.entered_ms is None:
            return []
        stay.outside_frames += 1
        if stay.outside_frames < zone.inertia_frames:
            return []
        exited = self._zone_event(event, track, zone.name, "zone_exit")
        stay.entered_ms, stay.outside_frames, stay.loitering_reported = None, 0, False
        return [exited]

    def _occupancy(self, event: At) -> list[TrackEvent]:
        counts: dict[tuple[str, str], int] = {}
        for track in self.tracks.values():
            for zone in track.inside():
                counts[(zone, track.label)] = counts.get((zone, track.label), 0) + 1
        out = []
        for key in sorted(set(counts) | set(self.occupancy)):
            n = counts.get(key, 0)
            if n != self.occupancy.get(key, 0):
                zone, label = key
                subject = f"{zone}/{label}"
                out.append(
                    TrackEvent(
                        track_event_id_for(self.camera, "occupancy", subject, event.frame_sequence),
                        self.camera,
                        "occupancy",
                        label,
                        event.frame_sequence,
                        event.capture_ts_ms,
                        zone=zone,
                        occupancy=n,
                    )  # fmt: skip
                )
        self.occupancy = {k: v for k, v in counts.items() if v}
        return out

    # -- events ------------------------------------------------------------------------------------------------
    def _lifecycle(self, event: At, track: Track, kind: str, end_reason: str | None = None) -> TrackEvent:
        return self._event(event, track, kind, place="", end_reason=end_reason)

    def _zone_event(self, event: At, track: Track, zone: str, kind: str) -> TrackEvent:
        entered = track.zones[zone].entered_ms
        dwell = None if kind == "zone_enter" or entered is None else self._clock - entered
        return self._event(event, track, kind, place=zone, zone=zone, dwell_ms=dwell)

    def _crossing(self, event: At, track: Track, line: LineSettings, direction: str) -> TrackEvent:
        return self._event(event, track, "line_cross", place=line.name, line=line.name, direction=direction)

    def _event(self, event: At, track: Track, kind: str, place: str, **extra: Any) -> TrackEvent:
        return TrackEvent(
            event_id=track_event_id_for(self.camera, kind, track.track_id, event.frame_sequence, place),
            camera_id=self.camera,
            kind=kind,
            label=track.label,
            frame_sequence=event.frame_sequence,
            ts_ms=event.capture_ts_ms,
            track_id=track.track_id,
            score=track.score,
            top_score=track.top_score,
            box_xyxy_norm=track.box,
            first_seen_ms=track.first_seen_ms,
            last_seen_ms=track.last_seen_ms,
            zones=track.inside(),
            zones_entered=tuple(track.entered),
            identity=track.identity,
            text=track.text,
            **extra,
        )

    def _label_id(self, label: str) -> int:
        if label not in self._labels:
            self._labels[label] = len(self._label_names)
            self._label_names.append(label)
        return self._labels[label]


def _vote(track: Track, identity: str, box: tuple[float, float, float, float]) -> bool:
    """Add a recognition to the track's vote, weighted by its box's area (a close, large face counts more than a
    distant one, as Frigate weighs them); `unknown` and no identity do not vote. True when the winner changed."""
    if not identity or identity == UNKNOWN_IDENTITY:
        return False
    track.votes[identity] = track.votes.get(identity, 0.0) + max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    winner = max(sorted(track.votes), key=lambda name: track.votes[name])
    if winner == track.identity:
        return False
    track.identity = winner
    return True


def read_score(d: Detection) -> float:
    """How sure a detection's text is: the plate-reader's `plate_read` attribute, else the detection's score."""
    return next((a.score for a in d.attributes if a.name == PLATE_READ), d.score) if d.text else 0.0


def _best_read(track: Track, text: str, score: float) -> bool:
    """Keep the track's most confident plate read (Frigate keeps a car's best read likewise). True when the
    track's text changed."""
    if not text or score <= track.text_score:
        return False
    changed = text != track.text
    track.text, track.text_score = text, score
    return changed


def clock_ms(event: DetectionEvent) -> int:
    """The camera's clock at this event: its presentation time if the source gave one, else its capture time."""
    return event.pts_ms if event.pts_ms is not None else event.capture_ts_ms


def _confirmed(tracked: sv.Detections) -> tuple[sv.Detections, list[int]]:
    """The detections the tracker has confirmed as tracks, and their tracker ids."""
    if tracked.tracker_id is None or not len(tracked):
        return sv.Detections.empty(), []
    keep = tracked.tracker_id >= 0
    return cast(sv.Detections, tracked[keep]), [int(t) for t in tracked.tracker_id[keep]]


def _within(box: tuple[float, float, float, float], region: tuple[float, float, float, float]) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def _applies(rule: ZoneSettings | LineSettings, label: str) -> bool:
    return rule.labels is None or label in rule.labels


def _make_tracker(settings: CameraAnalyticsSettings) -> Any:
    t = settings.tracker
    # Fed capture timestamps, the trackers keep a lost track for lost_track_buffer / 30 seconds: time, not frames.
    common: dict[str, Any] = {
        "lost_track_buffer": max(1, round(t.lost_track_s * 30)),
        "frame_rate": settings.expected_fps,
        "minimum_iou_threshold": t.minimum_iou,
    }
    if t.kind == "bytetrack":
        return ByteTrackTracker(
            **common, track_activation_threshold=t.activation_threshold, minimum_consecutive_frames=2
        )
    if t.kind == "ocsort":
        return OCSORTTracker(**common)
    return SORTTracker(**common, track_activation_threshold=t.activation_threshold)
