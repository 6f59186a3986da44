"""Motion per camera, where ingest already holds the decoded frame: what the model should look at.

The approach is Frigate's (frigate/motion/improved_motion.py), written here from its description: the frame's
luma scaled to a small height; its contrast stretched between slowly moving low and high percentiles, so a dim
night scene and a bright day scene give alike differences; a light blur against sensor noise; the absolute
difference to a running-average background (an exponential average over camera time), thresholded, dilated,
and cut into contours, each large enough one a moving box. A change over most of the frame at once (lightning,
an IR switch, auto exposure) is not motion: the background is taken afresh and re-learned quickly for a few
frames ("calibrating", each a whole look: the detector cannot tell what moves), so no false burst of regions
follows.
Masked areas (polygons, normalised to the frame) never move.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ingest.settings import MotionSettings
from schemas import Motion


@dataclass
class MotionResult:
    boxes: tuple[tuple[float, float, float, float], ...]
    calibrating: bool
    moving_share: float  # of the unmasked frame, after thresholding


class MotionDetector:
    """One camera's motion; feed it the camera's frames in order (BGR, any size; a new size starts over)."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._shape: tuple[int, int] | None = None
        self._background: np.ndarray | None = None
        self._keep: np.ndarray | None = None  # 1 where motion counts (outside the masks)
        self._kept_pixels = 0
        self._calibrating = 0
        self._low: float | None = None
        self._high: float | None = None
        self._clock_ms: float | None = None
        self._previous: np.ndarray | None = None  # the last frame, processed: what changed since

    def detect(self, bgr: np.ndarray, clock_ms: float | None = None) -> MotionResult:
        """Motion in this frame; `clock_ms` (the camera's clock) sets how far the background follows it (None:
        one frame at 5 fps)."""
        s = self.settings
        step_s = 0.2 if clock_ms is None or self._clock_ms is None else max(0.0, (clock_ms - self._clock_ms) / 1000)
        self._clock_ms = clock_ms
        small = self._luma(bgr)
        blurred = cv2.GaussianBlur(self._stretch(small), (0, 0), 1.0)
        if self._background is None:
            self._background = blurred.astype(np.float32)
            self._calibrating = s.calibration_frames
        diff = cv2.absdiff(blurred, cv2.convertScaleAbs(self._background))
        moved: np.ndarray = np.where(diff > s.threshold, 255, 0).astype(np.uint8)
        if self._keep is not None:
            moved = cv2.bitwise_and(moved, self._keep)
        share = float(np.count_nonzero(moved)) / max(1, self._kept_pixels)
        previous, self._previous = self._previous, blurred
        if s.change_spread is not None and previous is not None and previous.shape == blurred.shape:
            # Only what also changed since the last frame moves: where something was (the background still
            # holds some of it: a trail behind every walker) and what has stopped are not motion.
            changed: np.ndarray = np.where(cv2.absdiff(blurred, previous) > s.threshold, 255, 0).astype(np.uint8)
            if s.change_spread:
                changed = cv2.dilate(changed, np.ones((3, 3), np.uint8), iterations=s.change_spread)
            moved = cv2.bitwise_and(moved, changed)
        if share > s.lightning_share:
            # Not motion but the whole scene changing: stretch and background start again from this frame.
            self._low = self._high = None
            blurred = cv2.GaussianBlur(self._stretch(small), (0, 0), 1.0)
            self._background = blurred.astype(np.float32)
            self._calibrating = s.calibration_frames
        calibrating = self._calibrating > 0
        # An exponential average in camera time: the same background whatever the frame rate.
        alpha = s.calibration_alpha if calibrating else min(1.0, max(1e-4, 1.0 - math.exp(-step_s / s.background_s)))
        cv2.accumulateWeighted(blurred, self._background, alpha)
        if calibrating:
            self._calibrating -= 1
            return MotionResult((), True, share)
        if s.dilate_iterations:
            moved = cv2.dilate(moved, np.ones((3, 3), np.uint8), iterations=s.dilate_iterations)
        contours, _ = cv2.findContours(moved, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        h, w = moved.shape
        boxes = []
        for c in contours:
            if cv2.contourArea(c) < s.contour_area:
                continue
            x, y, bw, bh = cv2.boundingRect(c)
            boxes.append((x / w, y / h, min(1.0, (x + bw) / w), min(1.0, (y + bh) / h)))
        boxes.sort()
        return MotionResult(tuple(boxes), False, share)

    def _luma(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        rows = min(self.settings.frame_height, h)
        size = (max(1, round(w * rows / h)), rows)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        k = h // rows
        if k >= 2:
            # Averaging k x k blocks is OpenCV's fast path (about 4x a free area resize at 1080p); cut the
            # frame to whole blocks first (under k pixels at the right and bottom), then scale the rest exactly.
            gray = cv2.resize(gray[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if k < 2 else cv2.INTER_LINEAR)
        if self._shape != small.shape:  # first frame, or the camera's frame size changed: start over
            self._shape = small.shape
            self._background = None
            self._low = self._high = None
            self._keep = self._mask(small.shape) if self.settings.mask else None
            self._kept_pixels = int(np.count_nonzero(self._keep)) if self._keep is not None else small.size
        return small

    def _mask(self, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        keep = np.full((h, w), 255, np.uint8)
        for polygon in self.settings.mask:
            points = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in polygon], np.int32)
            cv2.fillPoly(keep, [points], 0)
        return keep

    def _stretch(self, small: np.ndarray) -> np.ndarray:
        """The luma stretched to 0-255 between the slowly followed low and high percentiles."""
        lo_p, hi_p = self.settings.contrast_percentiles
        lo, hi = (float(v) for v in np.percentile(small, (lo_p, hi_p)))
        a = self.settings.contrast_alpha
        self._low = lo if self._low is None else (1 - a) * self._low + a * lo
        self._high = hi if self._high is None else (1 - a) * self._high + a * hi
        span = max(1.0, self._high - self._low)
        return cv2.convertScaleAbs(small, alpha=255.0 / span, beta=-self._low * 255.0 / span)


class MotionTracker:
    """A camera's motion and its full-look clock: what the frame record's `motion` says.

    The camera's first frames are a full look; the periodic ones after it are spread over the interval by the
    camera's id (a stable phase per camera), so cameras started together do not all ask for whole frames at
    the same moment and make the model's queue a burst."""

    def __init__(self, settings: MotionSettings, camera_id: str = "") -> None:
        self.settings = settings
        self.detector = MotionDetector(settings)
        self._phase = zlib.crc32(camera_id.encode()) % 1000 / 1000.0  # 0 <= phase < 1
        self._last_ms: float | None = None
        self._next_full_ms: float | None = None
        self._full_left = 0  # frames of the current full look still to come

    def motion(self, bgr: np.ndarray, clock_ms: float) -> tuple[Motion, MotionResult, float]:
        """(the frame's motion record, what the detector saw, seconds it took)."""
        started = time.perf_counter()
        seen = self.detector.detect(bgr, clock_ms)
        interval_ms = None if self.settings.full_look_interval_s is None else self.settings.full_look_interval_s * 1000
        restarted = self._last_ms is None or clock_ms < self._last_ms  # first frame, or a looped/restarted source
        self._last_ms = clock_ms
        due = restarted or (self._next_full_ms is not None and clock_ms >= self._next_full_ms)
        if due:
            self._full_left = self.settings.full_look_frames
            if interval_ms is None:
                self._next_full_ms = None
            elif restarted:  # the first periodic look comes at the camera's phase of the interval
                self._next_full_ms = clock_ms + interval_ms * (0.5 + 0.5 * self._phase)
            else:
                self._next_full_ms = clock_ms + interval_ms
        # While it calibrates (the first frames, a global change) the detector cannot tell what moves: the model
        # looks at the whole frame, so nothing that moves meanwhile is taken for still.
        full = self._full_left > 0 or seen.calibrating
        self._full_left = max(0, self._full_left - 1)
        return Motion(seen.boxes, full_look=full), seen, time.perf_counter() - started
