"""Detection events for the sink tests: several cameras, labels and detections each."""

from __future__ import annotations

import time

from schemas import Attribute, Detection, DetectionEvent, EventCodec, FrameRef, Keypoint, event_id_for

LABELS = ("face", "person", "licence_plate")


def make_events(
    count: int,
    cameras: int = 3,
    per_event: int = 5,
    start_seq: int = 0,
    base_ms: int | None = None,
    camera_prefix: str = "cam",
) -> list[DetectionEvent]:
    base = int(time.time() * 1000) if base_ms is None else base_ms
    out = []
    for i in range(start_seq, start_seq + count):
        cam = f"{camera_prefix}{i % cameras}"
        ts = base + i * 10
        dets = tuple(
            Detection(
                LABELS[(i + j) % len(LABELS)],
                round(0.5 + 0.1 * (j % 5), 2),
                (0.1 * (j % 5), 0.1, 0.1 * (j % 5) + 0.1, 0.3),
                (Keypoint("nose", 0.15, 0.2),) if j == 0 else (),
                # v3 fields on some: a recognised face, a plate read, a classifier's attribute
                identity=("ada" if i % 2 else "unknown") if j == 0 else None,
                distance=0.25 + 0.125 * (i % 3) if j == 0 else None,
                text=f"AB{i % 100:02d}CDE" if j == 2 else None,
                attributes=(Attribute("glasses", 0.75),) if j == 1 else (),
            )
            for j in range(per_event)
        )
        out.append(
            DetectionEvent(
                event_id_for(cam, i, ts, "m", "1"),
                cam,
                i,
                ts,
                ts + 40,
                "m",
                "1",
                40.0,
                640,
                480,
                dets,
                frame_ref=FrameRef("frames", i % 4, 1000 + i) if i % 5 else None,
            )  # fmt: skip
        )
    return out


def encoded(events: list[DetectionEvent]) -> list[tuple[bytes, bytes]]:
    codec = EventCodec()
    return [(e.camera_id.encode(), codec.encode(e)) for e in events]
