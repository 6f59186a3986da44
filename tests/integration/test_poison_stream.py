"""A mixed stream of poison and good frames through a real `visionstream infer` process.

Every poison frame is dead-lettered with its error, every good frame gets its event, and the process stays
alive with its peak memory (VmHWM) under a bound: no frame can crash it, loop it or make it allocate gigabytes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from devkit.topics import committed_offsets, end_offsets, produce, read_all, wait_until
from schemas import EventCodec, Frame, FrameCodec, Preprocessing
from tests.integration.test_inference_group import infer_process

pytestmark = pytest.mark.integration

PEAK_RSS_BOUND_MB = 2048  # the default model's worker peaks near 1.3 GB; the bomb alone used to take > 20 GB


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def declared(data_: bytes, w: int, h: int) -> bytes:
    out = bytearray(data_)
    sof = out.find(b"\xff\xc0")
    out[sof + 5 : sof + 7], out[sof + 7 : sof + 9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    return bytes(out)


def message(camera: str, seq: int, image: bytes, w: int, h: int) -> bytes:
    frame = Frame(camera, seq, 1_764_000_000_000 + seq, w, h, image, "file:///t.mp4", Preprocessing(w, h, 85))
    return FrameCodec().encode(frame)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_poison_is_dead_lettered_good_frames_get_events_and_the_worker_stays_small(settings, tmp_path):
    s = settings
    cam = "poison-cam"
    face = jpeg(data.astronaut())
    tiny = jpeg(np.full((48, 64, 3), 90, np.uint8))
    big = jpeg(np.full((4320, 7680, 3), 60, np.uint8))  # an 8K frame: within the budget, decoded small
    good = [message(cam, i, face, 512, 512) for i in range(6)] + [message(cam, 6, big, 7680, 4320)]
    poison = {
        "NotSingleObjectError": b"\x00" * 64,
        "MalformedBodyError": good[0][:80],
        "CorruptImageError": message(cam, 100, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, 64, 48),
        "ImpossibleDimensionsError": message(cam, 101, declared(tiny, 6000, 6000), 64, 48),
        # the decompression bomb: header and declared size agree, the pixels are not there
        "PixelBudgetError": message(cam, 102, declared(tiny, 12000, 12000), 12000, 12000),
        "InvalidRecordError": message("a camera id with spaces and / slashes", 103, face, 512, 512),
    }
    stream = []
    for i, bad in enumerate(poison.values()):  # interleaved: poison never holds up the good frames behind it
        stream += [good[i], bad]
    stream += good[len(poison) :]
    worker = infer_process(s, s.inference.group_id, tmp_path / "infer.log")
    try:
        produce(s.kafka.bootstrap_servers, s.topics.frames, [(cam.encode(), m) for m in stream])
        events = read_all(s.kafka.bootstrap_servers, s.topics.detections, expected=len(good), timeout_s=180)
        dead = read_all(s.kafka.bootstrap_servers, s.topics.frames_dlq, expected=len(poison), timeout_s=60)
        log = (tmp_path / "infer.log").read_text(errors="replace")[-3000:]
        assert worker.poll() is None, f"the worker died:\n{log}"
        decoded = [EventCodec().decode(r.value) for r in events]
        assert sorted(e.frame_sequence for e in decoded) == list(range(len(good))), log
        assert all(len(e.detections) == 1 for e in decoded if e.frame_sequence < 6), "the face is found"
        assert {dict(r.headers)["dlq.error.class"].decode() for r in dead} == set(poison)
        assert sorted(r.value for r in dead) == sorted(poison.values()), "the original bytes, verbatim"
        peak = peak_rss_mb(worker.pid)
        assert peak < PEAK_RSS_BOUND_MB, f"peak RSS {peak:.0f} MB"
        print(f"infer peak RSS {peak:.0f} MB")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0


def test_the_poison_offset_is_committed_so_a_restart_cannot_crash_loop_on_it(settings, tmp_path):
    """The crash loop of the report came from a poison offset never committed: it must be committed past."""
    s = settings
    cam = "loop-cam"
    tiny = jpeg(np.full((48, 64, 3), 90, np.uint8))
    bomb = message(cam, 0, declared(tiny, 12000, 12000), 12000, 12000)
    produce(
        s.kafka.bootstrap_servers,
        s.topics.frames,
        [(cam.encode(), bomb), (cam.encode(), message(cam, 1, tiny, 64, 48))],
    )
    worker = infer_process(s, s.inference.group_id, tmp_path / "infer.log")
    try:
        ends = end_offsets(s.kafka.bootstrap_servers, s.topics.frames)
        wait_until(
            lambda: (
                committed_offsets(s.kafka.bootstrap_servers, s.inference.group_id, s.topics.frames).items()
                >= {p: o for p, o in ends.items() if o > 0}.items()
            ),
            120,
            lambda: f"offsets committed past the poison: {ends}; log: {(tmp_path / 'infer.log').read_text()[-2000:]}",
        )
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    assert len(read_all(s.kafka.bootstrap_servers, s.topics.frames_dlq, expected=1, timeout_s=10)) == 1
    assert len(read_all(s.kafka.bootstrap_servers, s.topics.detections, expected=1, timeout_s=10)) == 1
