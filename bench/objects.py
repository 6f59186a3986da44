"""Objects and poses: NanoDet-g (`objects`) and MoveNet MultiPose (`pose`) in-process, against OpenCV's HOG people
detector on the same frames of OpenCV's pedestrian clip (vtest.avi), and the objects detector through the pipeline
(ingest -> Kafka -> inference -> Kafka -> sink) against itself in-process, in one run."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.common import broker_for_run, run_settings
from bench.pipeline import camera_ids, decoded_frames, inprocess, run_pipeline
from evaluation.sample_video import excerpt, people_video
from inference.detectors import build_detector
from inference.settings import DetectorSettings

WARM_FRAMES = 30


def timed(detector: Any, frames: list[np.ndarray]) -> tuple[float, float]:
    """(ms per frame, people per frame) of one detector on the frames, one frame per call, after a warm-up."""
    detector.detect(frames[:1])
    people = 0
    started = time.perf_counter()
    for frame in frames:
        people += sum(d.label == "person" for d in detector.detect([frame])[0])
    return 1000 * (time.perf_counter() - started) / len(frames), people / len(frames)


def run(frames: int) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, broker_pid):
        clip = excerpt(people_video(), tmp / "people.mp4", frames)
        settings = run_settings(bootstrap, inference={"detector": {"type": "objects"}})
        seen = decoded_frames(clip, settings)
        objects_ms, objects_people = timed(build_detector(DetectorSettings(type="objects")), seen)
        pose_ms, pose_people = timed(build_detector(DetectorSettings(type="pose")), seen)
        hog_ms, hog_people = timed(build_detector(DetectorSettings(type="hog-people")), seen)
        cams = len(camera_ids(settings.topics.frames_partitions))
        base_fps, inproc_cpu_ms = inprocess(settings, seen * cams)
        # A longer warm-up than the face benchmark's: at this model's speed the fresh broker's JIT compiling
        # its hot paths (about 1.3 ms of CPU a frame in the first thousand frames) is a visible share.
        one = run_pipeline(
            bootstrap,
            tmp,
            clip,
            workers=1,
            extra_env={"VISIONSTREAM_INFERENCE__DETECTOR__TYPE": "objects"},
            warm_frames=WARM_FRAMES,
            broker_pid=broker_pid,
        )
        return {
            "frames": len(seen),
            "frame_size": f"{seen[0].shape[1]}x{seen[0].shape[0]}",
            "objects_ms_per_frame": round(objects_ms, 1),
            "objects_fps_inprocess": round(1000 / objects_ms, 2),
            "pose_ms_per_frame": round(pose_ms, 1),
            "pose_fps_inprocess": round(1000 / pose_ms, 2),
            "hog_ms_per_frame": round(hog_ms, 1),
            "objects_speed_vs_hog": round(hog_ms / objects_ms, 2),
            "people_per_frame_objects": round(objects_people, 2),
            "people_per_frame_hog": round(hog_people, 2),
            "people_per_frame_pose": round(pose_people, 2),
            "pipeline_fps_objects": round(one.fps, 2),
            "inprocess_fps_objects_batched": round(base_fps, 2),
            "pipeline_efficiency_objects": round(one.fps / base_fps, 3),
            "pipeline_warmup_frames_per_camera": WARM_FRAMES,
            # Where the pipeline's time beyond the model goes: CPU per frame of each process on the 2 cores
            "pipeline_cpu_ms_per_frame": one.cpu_ms_per_frame,
            "inprocess_cpu_ms_per_frame": round(inproc_cpu_ms, 2),
        }
