"""The console's frame reads: by claim check (the event's frame_ref: one seek) against a search from the capture
time (what an event without frame_ref needs), and through the console's HTTP endpoint against the direct read.
All on the same frames, in one run; each read misses the cache (a different frame every time)."""

from __future__ import annotations

import random
import time
from typing import Any

import cv2
import httpx
import numpy as np
from kafka import KafkaProducer, TopicPartition

from bench.common import broker_for_run, run_settings
from schemas import Frame, FrameCodec, Preprocessing
from visionstream.frames import FramePool, find_frame
from visionstream.kafka import make_reader
from visionstream.topics import ensure_topics

CAMERAS = 4


def _publish(bootstrap: str, topic: str, frames_per_camera: int) -> list[tuple[int, int, str, int, int]]:
    """Frames of 640x480 noise (about 30 KB as JPEG) from each camera, interleaved; their (partition, offset,
    camera, sequence, capture ms)."""
    rng = np.random.default_rng(7)
    image = cv2.imencode(".jpg", rng.integers(0, 255, (480, 640, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 60])[1]
    codec = FrameCodec()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 << 20)
    sent = []
    try:
        for seq in range(frames_per_camera):
            for c in range(CAMERAS):
                camera = f"cam-{c}"
                ts = int(time.time() * 1000)
                value = codec.encode(
                    Frame(camera, seq, ts, 640, 480, image.tobytes(), "bench", Preprocessing(640, 480, 60))
                )
                sent.append((producer.send(topic, key=camera.encode(), value=value), camera, seq, ts))
            time.sleep(0.002)  # frames a few ms apart, as a camera's are
        producer.flush(60)
        return [(f.get().partition, f.get().offset, camera, seq, ts) for f, camera, seq, ts in sent]
    finally:
        producer.close()


def run(reads: int = 100, frames_per_camera: int = 500) -> dict[str, Any]:
    from cli.console import BackgroundConsole

    with broker_for_run() as b:
        settings = run_settings(b.bootstrap)
        settings = settings.model_copy(
            update={"console": settings.console.model_copy(update={"addr": "127.0.0.1", "roles": {}})}
        )
        ensure_topics(settings.kafka, settings.topics, [settings.topics.frames, settings.topics.detections])
        topic = settings.topics.frames
        refs = _publish(b.bootstrap, topic, frames_per_camera)
        sample = random.Random(3).sample(refs, 3 * reads)
        by_ref, by_time, by_http = sample[:reads], sample[reads : 2 * reads], sample[2 * reads :]

        pool = FramePool(settings.kafka, "bench", readers=1, timeout_s=10, cache=0)
        pool.get(topic, *by_ref[0])  # connect once
        t0 = time.perf_counter()
        found_ref = sum(pool.get(topic, *ref) is not None for ref in by_ref)
        ref_ms = (time.perf_counter() - t0) * 1000 / reads
        pool.close()

        reader = make_reader(settings.kafka, "bench")
        codec = FrameCodec()
        t0 = time.perf_counter()
        found_time = sum(
            find_frame(reader, codec, TopicPartition(topic, p), cam, seq, ts, None, 10) is not None
            for p, _offset, cam, seq, ts in by_time
        )
        time_ms = (time.perf_counter() - t0) * 1000 / reads
        reader.close()

        console = BackgroundConsole(settings, port=0)
        url = console.start()
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                p, offset, cam, seq, ts = by_http[0]
                client.get(f"/frame/{p}/{offset}", params={"camera": cam, "sequence": seq, "ts": ts})
                t0 = time.perf_counter()
                found_http = 0
                for p, offset, cam, seq, ts in by_http:
                    resp = client.get(f"/frame/{p}/{offset}", params={"camera": cam, "sequence": seq, "ts": ts})
                    found_http += resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
                http_ms = (time.perf_counter() - t0) * 1000 / reads
        finally:
            console.stop()
    return {
        "frames_on_topic": len(refs),
        "reads": reads,
        "claim_check_ms_per_frame": round(ref_ms, 2),
        "time_search_ms_per_frame": round(time_ms, 2),
        "time_search_over_claim_check": round(time_ms / ref_ms, 2),
        "console_http_ms_per_frame": round(http_ms, 2),
        "console_http_over_direct_read": round(http_ms / ref_ms, 2),
        "found": {"claim_check": found_ref, "time_search": found_time, "console_http": found_http},
    }
