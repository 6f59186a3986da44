"""Inference spends the model where the frame's motion is: the plan (whole, regions, none), boxes mapped back from
regions (the clipped-at-the-edge rule, NMS across regions), the real objects detector on a region against the
whole frame, and the batch choice that never skips a frame that costs no model call."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import pytest
from skimage import data

from inference.gating import GatingSettings, Plan, combine, crops, plan
from inference.selection import Candidate, choose
from schemas import Detection, Keypoint, Motion

S = GatingSettings()


def test_no_motion_record_or_a_full_look_is_the_whole_frame_and_no_boxes_is_none():
    assert plan(None, 1280, 720, 416, S).look == "whole"
    assert plan(Motion(((0.1, 0.1, 0.2, 0.2),), full_look=True), 1280, 720, 416, S).look == "whole"
    assert plan(Motion(()), 1280, 720, 416, S).look == "none"
    assert plan(Motion(()), 1280, 720, 416, GatingSettings(enabled=False)).look == "whole"


def test_a_small_motion_box_becomes_a_square_of_the_input_side_inside_the_frame():
    p = plan(Motion(((0.95, 0.9, 0.99, 1.0),)), 1280, 720, 416, S)  # near the bottom-right corner
    assert p.look == "regions" and p.regions == ((864, 304, 1280, 720),)
    big = plan(Motion(((0.4, 0.3, 0.5, 0.7),)), 1280, 720, 416, S)  # 128 x 288 px: twice is 576 px
    ((x0, y0, x1, y1),) = big.regions
    assert (x1 - x0, y1 - y0) == (576, 576) and (x0 + x1) / 2 == pytest.approx(576, abs=1)
    ((x0, y0, x1, y1),) = plan(Motion(((0.5, 0.5, 0.55, 0.55),)), 1280, 720, None, S).regions
    assert (x1 - x0, y1 - y0) == (320, 320)  # no fixed input: min_region_px


def test_overlapping_regions_merge_and_too_much_of_the_frame_is_one_whole_look():
    two = plan(Motion(((0.1, 0.1, 0.12, 0.12), (0.9, 0.8, 0.92, 0.82))), 1920, 1080, 416, S)
    assert two.look == "regions" and len(two.regions) == 2
    near = plan(Motion(((0.1, 0.1, 0.12, 0.12), (0.2, 0.15, 0.22, 0.17))), 1920, 1080, 416, S)
    assert near.look == "regions" and len(near.regions) == 1
    ((x0, y0, x1, y1),) = near.regions
    assert x0 <= 0.1 * 1920 and x1 >= 0.22 * 1920  # one square around both
    spread = Motion(tuple((0.1 + 0.16 * i, 0.5, 0.12 + 0.16 * i, 0.52) for i in range(6)))
    assert plan(spread, 1920, 1080, 416, S).look == "whole"  # more regions than max_regions
    assert plan(Motion(((0.1, 0.1, 0.9, 0.9),)), 1280, 720, 416, S).look == "whole"  # most of the frame


def test_boxes_map_back_to_the_frame_cut_ones_drop_and_twins_from_two_regions_merge():
    p = Plan("regions", ((100, 100, 500, 500), (400, 100, 800, 500)))
    # a person at x 420-480 px, where the two regions overlap, seen by both
    person = Detection("person", 0.9, (0.8, 0.25, 0.95, 0.75), (Keypoint("nose", 0.9, 0.5),))
    cut = Detection("car", 0.8, (0.9, 0.25, 1.0, 0.5))  # touches the first region's inner right edge
    twin = Detection("person", 0.7, (0.05, 0.25, 0.2, 0.75))
    out = combine(p, [[person, cut], [twin]], 1000, 1000, S)
    assert [d.label for d in out] == ["person"] and out[0].score == 0.9
    assert out[0].box_xyxy_norm == pytest.approx((0.42, 0.2, 0.48, 0.4))
    assert (out[0].keypoints[0].x, out[0].keypoints[0].y) == pytest.approx((0.46, 0.3))
    # at the frame's own edge a box is not cut off by the crop
    edge = Plan("regions", ((600, 0, 1000, 400),))
    kept = combine(edge, [[Detection("car", 0.8, (0.5, 0.0, 1.0, 0.5))]], 1000, 1000, S)
    assert kept and kept[0].box_xyxy_norm == pytest.approx((0.8, 0.0, 1.0, 0.2))


def test_the_objects_detector_finds_the_person_in_its_region_as_in_the_whole_frame():
    from inference.detectors import build_detector
    from inference.settings import DetectorSettings

    detector = build_detector(DetectorSettings(type="objects"))
    frame = cv2.resize(data.coffee(), (1280, 720))
    frame[300:660, 700:940] = cv2.resize(data.astronaut(), (240, 360))  # a person in the scene
    whole = [d for d in detector.detect([frame])[0] if d.label == "person"]
    motion = Motion(((700 / 1280, 300 / 720, 940 / 1280, 660 / 720),))
    p = plan(motion, 1280, 720, detector.input_side, S)
    assert p.look == "regions" and detector.input_side == 416
    found = combine(p, detector.detect(crops(frame, p)), 1280, 720, S)
    people = [d for d in found if d.label == "person"]
    assert whole and people

    def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    assert iou(whole[0].box_xyxy_norm, people[0].box_xyxy_norm) > 0.8


def rec(offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic="frames", partition=0, offset=offset)


def test_frames_without_motion_are_always_taken_and_never_supersede():
    # one live camera: a frame with motion, then three still ones, then one with motion; batch capacity 1
    cands = [
        Candidate(rec(0), "cam", True),
        Candidate(rec(1), "cam", True, free=True),
        Candidate(rec(2), "cam", True, free=True),
        Candidate(rec(3), "cam", True),
        Candidate(rec(4), "cam", True, free=True),
    ]
    choice = choose(cands, 1)
    assert [r.offset for r in choice.infer] == [1, 2, 3, 4]  # the newest model frame plus every free one
    assert [r.offset for r in choice.superseded] == [0]  # superseded by frame 3, not by the free frames
    assert [r.offset for r in choice.taken] == [0, 1, 2, 3, 4]
    older = choose([Candidate(rec(0), "cam", True), Candidate(rec(1), "cam", True, free=True)], 1)
    assert [r.offset for r in older.infer] == [0, 1] and not older.superseded
