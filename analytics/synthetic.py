"""Detection streams of objects moving on known paths: for tests, the benchmark, and trying zones out.

Object k of n walks left to right in its own lane at its own speed, so each crosses a vertical line at x = 0.5
once, inbound; every 7th object stops for a while (occlusion); the stream is deterministic for given arguments.
"""

from __future__ import annotations

from collections.abc import Iterator

from schemas import Detection, DetectionEvent, event_id_for

WIDTH, HEIGHT = 1280, 720


def walking_objects(
    camera: str,
    frames: int,
    objects: int,
    *,
    start_seq: int = 0,
    t0_ms: int = 1_764_000_000_000,
    frame_ms: int = 200,
    label: str = "person",
) -> Iterator[DetectionEvent]:
    lanes = max(1, objects)
    height = min(0.12, 0.9 / lanes)
    width = height * 0.5
    for i in range(start_seq, start_seq + frames):
        ts = t0_ms + i * frame_ms
        dets = []
        for k in range(objects):
            if k % 7 == 3 and 12 <= i % 60 < 15:
                continue  # briefly hidden behind something
            speed = 0.6 / max(frames, 1) * (1.0 + 0.25 * (k % 4))
            x = min(0.02 + speed * i, 1.0 - width)
            y = 0.05 + (k % lanes) * (0.9 / lanes)
            dets.append(Detection(label, 0.9, (x, y, x + width, min(1.0, y + height))))
        yield DetectionEvent(
            event_id_for(camera, i, ts, "synthetic", "1"),
            camera,
            i,
            ts,
            ts + 20,
            "synthetic",
            "1",
            20.0,
            WIDTH,
            HEIGHT,
            tuple(dets),
        )


GATE = {"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}
LEFT_HALF = {"name": "left", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 2}
