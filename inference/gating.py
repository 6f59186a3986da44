"""Spend the model where ingest saw motion: whole frame, square regions around the motion, or nothing.

Everything this needs is in the frame record (its `motion`), so inference stays stateless:
- no motion record (ingest did not look), or a full look asked for (a camera's first frame, the periodic look for
  still objects, calibration after a lighting change): the whole frame;
- a motion record with no boxes: no model call (the event says `look: none`);
- else each motion box grows into a square region around its centre (2x the box by default, at least the model's
  input side so nothing is scaled up, inside the frame); regions that overlap merge into one around both; when
  the regions would cover most of the frame (or there are many), one whole-frame call is cheaper and is made.
The model runs on each region crop at the frame's own resolution; boxes map back to the frame. A box touching a
region's edge where the region does not reach the frame's edge is cut off by the crop and dropped (the object is
not wholly in view of this look), and boxes of the same label found in two overlapping regions go through NMS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydantic import Field

from schemas import Detection, Keypoint, Motion
from schemas.types import LOOK_NONE, LOOK_REGIONS, LOOK_WHOLE, Box
from visionstream.settings import Section

PixelBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive ends


class GatingSettings(Section):
    enabled: bool = Field(
        True, description="Honour the motion frames carry: no model on still frames, regions around motion."
    )
    region_scale: float = Field(2.0, ge=1.0, le=10.0, description="A motion box's region: this many times its size.")
    min_region_px: int = Field(
        320,
        ge=32,
        description="Smallest region side for a model without a fixed input size (the input side otherwise).",
    )
    whole_share: float = Field(
        0.7, gt=0, le=1, description="Regions covering more than this share of the frame: look at the whole frame."
    )
    max_regions: int = Field(4, ge=1, le=64, description="More regions than this: look at the whole frame.")
    edge_margin: float = Field(
        0.01, ge=0, le=0.2, description="A box within this share of a region's inner edge is cut off and dropped."
    )
    nms_iou: float = Field(0.5, gt=0, le=1, description="Same-label boxes from overlapping regions above it merge.")


@dataclass(frozen=True)
class Plan:
    look: str
    regions: tuple[PixelBox, ...] = ()

    def regions_norm(self, width: int, height: int) -> tuple[Box, ...]:
        return tuple((x0 / width, y0 / height, x1 / width, y1 / height) for x0, y0, x1, y1 in self.regions)


WHOLE = Plan(LOOK_WHOLE)
NONE = Plan(LOOK_NONE)


def plan(motion: Motion | None, width: int, height: int, input_side: int | None, s: GatingSettings) -> Plan:
    """What the model looks at in a `width` x `height` frame with this motion record."""
    if not s.enabled or motion is None or motion.full_look:
        return WHOLE
    if not motion.boxes:
        return NONE
    side_min = input_side or s.min_region_px
    regions = [_square(b, width, height, s.region_scale, side_min) for b in motion.boxes]
    regions = _merge(regions, width, height, side_min)
    covered = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
    if len(regions) > s.max_regions or covered > s.whole_share * width * height:
        return WHOLE
    return Plan(LOOK_REGIONS, tuple(sorted(regions)))


def _square(box: Box, width: int, height: int, scale: float, side_min: int) -> PixelBox:
    """A square around the box's centre, `scale` times its longer side and at least `side_min`, moved inside the
    frame (a frame smaller than the square on a side gives that whole side)."""
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    side = max(side_min, scale * max(x1 - x0, y1 - y0))
    return _fit((x0 + x1) / 2, (y0 + y1) / 2, side, width, height)


def _fit(cx: float, cy: float, side: float, width: int, height: int) -> PixelBox:
    w, h = min(side, width), min(side, height)
    left = min(max(0.0, cx - w / 2), width - w)
    top = min(max(0.0, cy - h / 2), height - h)
    return round(left), round(top), round(left + w), round(top + h)


def _merge(regions: list[PixelBox], width: int, height: int, side_min: int) -> list[PixelBox]:
    """Overlapping regions become one square around both, until none overlap."""
    regions = list(regions)
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    x0, y0, x1, y1 = min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
                    side = max(side_min, x1 - x0, y1 - y0)
                    regions[j] = _fit((x0 + x1) / 2, (y0 + y1) / 2, side, width, height)
                    del regions[i]
                    merged = True
                    break
            if merged:
                break
    return regions


def crops(image: np.ndarray, p: Plan) -> list[np.ndarray]:
    """The images the model runs on for this plan (views, not copies)."""
    if p.look == LOOK_WHOLE:
        return [image]
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in p.regions]


def combine(p: Plan, found: list[list[Detection]], width: int, height: int, s: GatingSettings) -> list[Detection]:
    """The frame's detections from the model's answer on each crop of the plan (boxes normalised to the frame)."""
    if p.look == LOOK_WHOLE:
        return found[0]
    out: list[Detection] = []
    for (x0, y0, x1, y1), dets in zip(p.regions, found, strict=True):
        rw, rh = x1 - x0, y1 - y0
        m = s.edge_margin
        for d in dets:
            bx0, by0, bx1, by1 = d.box_xyxy_norm
            cut = (
                (bx0 <= m and x0 > 0)
                or (by0 <= m and y0 > 0)
                or (bx1 >= 1 - m and x1 < width)
                or (by1 >= 1 - m and y1 < height)
            )
            if cut:
                continue
            out.append(_moved(d, x0, y0, rw, rh, width, height))
    if len(p.regions) > 1 and len(out) > 1:
        out = _nms(out, s.nms_iou)
    return out


def _moved(d: Detection, x0: int, y0: int, rw: int, rh: int, width: int, height: int) -> Detection:
    """A detection normalised to its region, normalised to the frame instead (keypoints too)."""

    def fx(v: float) -> float:
        return min(1.0, max(0.0, (x0 + v * rw) / width))

    def fy(v: float) -> float:
        return min(1.0, max(0.0, (y0 + v * rh) / height))

    bx0, by0, bx1, by1 = d.box_xyxy_norm
    keypoints = tuple(Keypoint(k.name, fx(k.x), fy(k.y)) for k in d.keypoints)
    return replace(d, box_xyxy_norm=(fx(bx0), fy(by0), fx(bx1), fy(by1)), keypoints=keypoints)


def _nms(dets: list[Detection], iou: float) -> list[Detection]:
    labels = sorted({d.label for d in dets})
    xywh = [[d.box_xyxy_norm[0], d.box_xyxy_norm[1], d.box_xyxy_norm[2] - d.box_xyxy_norm[0],
             d.box_xyxy_norm[3] - d.box_xyxy_norm[1]] for d in dets]  # fmt: skip
    keep = cv2.dnn.NMSBoxesBatched(
        xywh, [float(d.score) for d in dets], [labels.index(d.label) for d in dets], 0.0, iou
    )
    return [dets[i] for i in sorted(int(i) for i in np.asarray(keep).ravel())]
