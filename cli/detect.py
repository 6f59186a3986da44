"""`visionstream detect IMAGE...`: try a detector on pictures, in-process, before deploying it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from cli.config import AppSettings
from inference.detectors import Detector, build_detector
from inference.recognition.stages import RegionStage, build_stages
from inference.settings import DetectorSettings


def run_detect(
    configured: DetectorSettings,
    images: list[Path],
    model: str | None,
    options_json: str | None,
    annotate: Path | None,
    chain: AppSettings | None = None,
) -> int:
    """One JSON line per image; with `chain`, its inference.chain runs on the detections (camera id `detect`)."""
    settings = configured
    if model is not None or options_json is not None:
        try:
            options = json.loads(options_json) if options_json else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"--options is not valid JSON: {exc}") from exc
        settings = DetectorSettings(type=model or configured.type, options=options)
    detector = build_detector(settings)
    stages = build_stages(chain.inference.chain, chain.kafka, chain.topics) if chain is not None else []
    for stage in stages:
        stage.start()
    try:
        return _detect_all(detector, stages, images, annotate)
    finally:
        for stage in stages:
            stage.close()


def _detect_all(detector: Detector, stages: list[RegionStage], images: list[Path], annotate: Path | None) -> int:
    if annotate is not None:
        annotate.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if bgr is None:
            print(f"visionstream detect: not a readable image: {path}", file=sys.stderr)
            failed += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        (found,) = detector.detect([rgb])
        for stage in stages:
            found = stage.apply("detect", rgb, found)
        h, w = bgr.shape[:2]
        record = {
            "image": str(path),
            "width": w,
            "height": h,
            "model": detector.name,
            "version": detector.version,
            "detections": [
                {
                    "label": d.label,
                    "score": round(d.score, 4),
                    "box": dict(
                        zip(("x_min", "y_min", "x_max", "y_max"), (round(v, 4) for v in d.box_xyxy_norm), strict=True)
                    ),
                    "keypoints": [{"name": k.name, "x": round(k.x, 4), "y": round(k.y, 4)} for k in d.keypoints],
                    # what a model on the region made of it (a plate's text, an identity, classes), when set
                    **{
                        k: v
                        for k, v in (("identity", d.identity), ("distance", d.distance), ("text", d.text))
                        if v is not None
                    },
                    **(
                        {"attributes": [{"name": a.name, "score": a.score} for a in d.attributes]}
                        if d.attributes
                        else {}
                    ),
                }  # fmt: skip
                for d in found
            ],
        }
        print(json.dumps(record))
        if annotate is not None:
            for d in found:
                x0, y0, x1, y1 = d.box_xyxy_norm
                p0, p1 = (int(x0 * w), int(y0 * h)), (int(x1 * w), int(y1 * h))
                cv2.rectangle(bgr, p0, p1, (0, 255, 0), 2)
                cv2.putText(
                    bgr,
                    f"{d.label} {d.score:.2f}" + (f" {d.text or d.identity}" if d.text or d.identity else ""),
                    (p0[0], max(12, p0[1] - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.5,
                    (0, 255, 0),
                    1,
                )
            cv2.imwrite(str(annotate / path.name), bgr)
    return 1 if failed else 0
