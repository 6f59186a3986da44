"""Recognition: the models of the chain stages alone, then whole `visionstream infer` workers with each chain
against the same detector without it, in one run.

- Face embedding (dlib ResNet, aligned by the 5-point landmarks) per face, on the astronaut photo's face.
- Gallery search (numpy, one probe against every enrolled embedding) at 1k and 100k identities.
- Plates (RapidOCR): per plate crop (recognition only), per car box (text detection + recognition), and per
  dedicated-camera frame (the plate-ocr detector on the whole 640x360 frame), on the generated plate set.
- Pipeline: frames/s of a real inference worker through the broker (file frames, so none is skipped): MTCNN on
  the demo's sample clip (the astronaut's face moving across the frame), alone, with face-identity embedding
  every face of every frame (`recheck_ms: 0`), and with the default recheck_ms (a face overlapping one embedded
  on the camera within a second takes its match); the astronaut is enrolled, so every face is matched. And
  plate-ocr with and without plate-reader (formats and known plates) on the generated plate frames. The rate is
  from the events' inference times, first to last.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skimage import data

from bench.common import broker_for_run, run_settings
from bench.pipeline import start_inference
from cli import faces
from cli.config import AppSettings
from devkit.topics import produce, read_all
from evaluation.plates import FORMATS, plate_set
from evaluation.sample_video import make_sample_clip
from inference.detectors import build_detector
from inference.recognition.faces import EMBEDDING_SIZE, FaceEmbedder, FaceGallery
from inference.recognition.plates import PlateOcr
from inference.settings import DetectorSettings
from schemas import EventCodec, Frame, FrameCodec, Preprocessing


def _ms(fn: Any, items: list[Any], repeat: int = 1) -> float:
    fn(items[0])  # warm
    started = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return 1000 * (time.perf_counter() - started) / (repeat * len(items))


def model_figures(faces_n: int, plates_n: int) -> dict[str, Any]:
    photo = data.astronaut()
    detector = build_detector(DetectorSettings(type="mtcnn"))
    (face, *_) = detector.detect([photo])[0]
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = face.box_xyxy_norm
    box = (int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h))
    embedder = FaceEmbedder()
    out: dict[str, Any] = {"embed_ms_per_face": round(_ms(lambda _: embedder.embed(photo, [box]), [0] * faces_n), 2)}
    rng = np.random.default_rng(0)
    probe = embedder.embed(photo, [box])
    for people in (1_000, 100_000):
        gallery = FaceGallery()
        vectors = rng.normal(0, 0.1, (people, EMBEDDING_SIZE)).astype(np.float32)
        gallery.replace_all((f"p{i}", vectors[i : i + 1]) for i in range(people))
        key = "gallery_search_ms_1k" if people == 1_000 else "gallery_search_ms_100k"
        out[key] = round(_ms(lambda _, g=gallery: g.match(probe), [0] * 20), 3)
    ocr = PlateOcr()
    samples = plate_set(plates_n, seed=5)
    crops = [s.image[s.plate_box[1] : s.plate_box[3], s.plate_box[0] : s.plate_box[2]] for s in samples]
    cars = [s.image[s.car_box[1] : s.car_box[3], s.car_box[0] : s.car_box[2]] for s in samples]
    out["plate_ms_per_crop"] = round(_ms(ocr.read_crop, crops), 1)
    out["plate_ms_per_vehicle_box"] = round(_ms(ocr.find, cars), 1)
    camera = build_detector(DetectorSettings(type="plate-ocr", options={"mode": "find"}))
    out["plate_ms_per_camera_frame"] = round(_ms(lambda img: camera.detect([img]), [s.image for s in samples]), 1)
    return out


def _frames(camera: str, images: list[np.ndarray]) -> list[tuple[bytes, bytes]]:
    codec = FrameCodec()
    out = []
    for seq, img in enumerate(images):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        h, w = img.shape[:2]
        frame = Frame(camera, seq, int(time.time() * 1000), w, h, jpeg.tobytes(), f"/bench/{camera}/{seq}.jpg",
                      Preprocessing(w, h, 90))  # fmt: skip
        out.append((camera.encode(), codec.encode(frame)))
    return out


def clip_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return frames
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()


def pipeline_fps(bootstrap: str, tmp: Path, name: str, images: list[np.ndarray], env: dict[str, str]) -> float:
    """Frames/s of one `visionstream infer` worker over `images`, from its events' inference times."""
    settings = run_settings(bootstrap, partitions=1)
    worker = start_inference(settings, tmp, env)
    try:
        worker.wait_ready()
        produce(bootstrap, settings.topics.frames, _frames(name, images))
        records = read_all(bootstrap, settings.topics.detections, len(images), timeout_s=600)
    finally:
        worker.stop()
    codec = EventCodec()
    times = sorted(codec.decode(r.value).inference_ts_ms for r in records)
    if len(times) < len(images):
        raise RuntimeError(f"{name}: {len(times)} of {len(images)} events ({worker.log})")
    return (len(times) - 1) / max(1e-3, (times[-1] - times[0]) / 1000)


def run(frames: int) -> dict[str, Any]:
    result = model_figures(faces_n=20, plates_n=20)
    photo = data.astronaut()
    plate_images = [s.image for s in plate_set(frames, seed=9)]
    with broker_for_run() as b:
        gallery = f"bench-{b.tmp.name}.faces"
        enrolled: AppSettings = run_settings(b.bootstrap)
        enrolled = enrolled.model_copy(update={"topics": enrolled.topics.model_copy(update={"faces": gallery})})
        photo_file = b.tmp / "astronaut.jpg"
        cv2.imwrite(str(photo_file), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        faces.enroll(enrolled, "Eileen", [photo_file])
        face_env = {"VISIONSTREAM_TOPICS__FACES": gallery}
        face_images = clip_frames(make_sample_clip(b.tmp / "clip.mp4", frames=frames).path)
        every = json.dumps([{"type": "face-identity", "options": {"recheck_ms": 0}}])
        result["pipeline_fps_faces_only"] = round(pipeline_fps(b.bootstrap, b.tmp, "faces", face_images, face_env), 2)
        identity_env = {**face_env, "VISIONSTREAM_INFERENCE__CHAIN": every}
        result["pipeline_fps_faces_identity"] = round(
            pipeline_fps(b.bootstrap, b.tmp, "faces", face_images, identity_env), 2
        )
        # the default recheck_ms: matches reused between embeddings while the face moves little
        recheck_env = {**face_env, "VISIONSTREAM_INFERENCE__CHAIN": json.dumps([{"type": "face-identity"}])}
        result["pipeline_fps_faces_identity_recheck"] = round(
            pipeline_fps(b.bootstrap, b.tmp, "faces", face_images, recheck_env), 2
        )
        plate_env = {"VISIONSTREAM_INFERENCE__DETECTOR": json.dumps({"type": "plate-ocr", "options": {"mode": "find"}})}
        reader = [{"type": "plate-reader", "options": {"formats": list(FORMATS), "known_plates": {"AB12CDE": "x"}}}]
        result["pipeline_fps_plates_only"] = round(
            pipeline_fps(b.bootstrap, b.tmp, "plates", plate_images, plate_env), 2
        )
        result["pipeline_fps_plates_reader"] = round(
            pipeline_fps(
                b.bootstrap,
                b.tmp,
                "plates",
                plate_images,
                {**plate_env, "VISIONSTREAM_INFERENCE__CHAIN": json.dumps(reader)},
            ),
            2,
        )
    result["identity_recheck_fps_ratio"] = round(
        result["pipeline_fps_faces_identity_recheck"] / result["pipeline_fps_faces_only"], 3
    )
    result["identity_fps_ratio"] = round(result["pipeline_fps_faces_identity"] / result["pipeline_fps_faces_only"], 3)
    result["plate_reader_fps_ratio"] = round(
        result["pipeline_fps_plates_reader"] / result["pipeline_fps_plates_only"], 3
    )
    result["frames_per_pipeline_run"] = frames
    return result
