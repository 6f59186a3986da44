"""Detection metrics: precision, recall and F1 at an IoU and a score threshold (per class and over all), F1 against
the score threshold, a confusion matrix, and AP50 and mAP@[.5:.95] from the reference COCO evaluation
(faster-coco-eval, which reproduces pycocotools' COCOeval; a test checks they agree).

Matching is COCO's: per image and class, predictions in descending score take the unmatched ground-truth box of
highest IoU at or above the threshold. So the matches at a score threshold are those of the predictions above it,
and one pass gives every threshold's counts.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.coco import Box, Dataset

BACKGROUND = "background"


def iou_xywh(a: tuple[float, float, float, float], b: np.ndarray) -> np.ndarray:
    """IoU of box `a` with each row of `b` (all x, y, w, h)."""
    if not len(b):
        return np.zeros(0)
    ax1, ay1 = a[0] + a[2], a[1] + a[3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def greedy_match(preds: list[Box], truth: list[Box], iou: float) -> list[int | None]:
    """COCO's matching: predictions in descending score each take the unmatched box of highest IoU at or above
    `iou`. For each prediction (in the given order), the index of its box in `truth`, or None."""
    boxes = np.array([t.bbox for t in truth], dtype=float).reshape(-1, 4)
    taken = np.zeros(len(truth), dtype=bool)
    out: list[int | None] = [None] * len(preds)
    for k in sorted(range(len(preds)), key=lambda k: -preds[k].score):
        overlaps = iou_xywh(preds[k].bbox, boxes)
        overlaps[taken] = -1
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= iou:
            taken[best] = True
            out[k] = best
    return out


@dataclass
class ClassCounts:
    ground_truth: int = 0
    scores: list[float] = field(default_factory=list)  # every prediction's score
    matched: list[bool] = field(default_factory=list)  # whether it matched a ground-truth box

    def at(self, threshold: float) -> tuple[int, int, int]:
        """(true positives, false positives, false negatives) of the predictions scoring at least `threshold`."""
        s, m = np.asarray(self.scores), np.asarray(self.matched, dtype=bool)
        keep = s >= threshold
        tp = int((m & keep).sum())
        return tp, int(keep.sum()) - tp, self.ground_truth - tp


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty denominator gives 0 (nothing predicted, or nothing to find)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def match(dataset: Dataset, predictions: list[Box], iou: float) -> dict[int, ClassCounts]:
    """Each class's predictions, matched COCO-style to the ground truth at `iou`."""
    counts = {cid: ClassCounts() for cid in dataset.categories}
    truth: dict[tuple[int, int], list[Box]] = {}
    for b in dataset.annotations:
        if not b.iscrowd:
            truth.setdefault((b.image_id, b.category_id), []).append(b)
            counts[b.category_id].ground_truth += 1
    preds: dict[tuple[int, int], list[Box]] = {}
    for p in predictions:
        preds.setdefault((p.image_id, p.category_id), []).append(p)
    for key, group in preds.items():
        for p, hit in zip(group, greedy_match(group, truth.get(key, []), iou), strict=True):
            counts[key[1]].scores.append(p.score)
            counts[key[1]].matched.append(hit is not None)
    return counts


def confusion(dataset: Dataset, predictions: list[Box], iou: float, score: float) -> tuple[list[str], np.ndarray]:
    """Rows: the true class (last: background, a prediction matching nothing); columns: the predicted class (last:
    background, a box nothing found). Predictions at or above `score` match any class's box, best score first."""
    names = [dataset.categories[c] for c in sorted(dataset.categories)] + [BACKGROUND]
    index = {cid: i for i, cid in enumerate(sorted(dataset.categories))}
    bg = len(names) - 1
    matrix = np.zeros((len(names), len(names)), dtype=int)
    by_image: dict[int, list[Box]] = {}
    for b in dataset.annotations:
        if not b.iscrowd:
            by_image.setdefault(b.image_id, []).append(b)
    pred_by_image: dict[int, list[Box]] = {}
    for p in predictions:
        if p.score >= score:
            pred_by_image.setdefault(p.image_id, []).append(p)
    for image in dataset.images:
        gts, preds = by_image.get(image.id, []), pred_by_image.get(image.id, [])
        matched = greedy_match(preds, gts, iou)  # any class's box: a wrong class is a confusion, not a miss
        for p, m in zip(preds, matched, strict=True):
            matrix[bg if m is None else index[gts[m].category_id], index[p.category_id]] += 1
        found = {m for m in matched if m is not None}
        for j, g in enumerate(gts):
            if j not in found:
                matrix[index[g.category_id], bg] += 1
    return names, matrix


@dataclass(frozen=True)
class CocoFigures:
    ap50: float
    map50_95: float
    per_class_ap50: dict[int, float]
    recall_points: np.ndarray  # the evaluation's 101 recall thresholds
    precision_at_50: dict[int, np.ndarray]  # per class: interpolated precision at each recall point, IoU 0.5


def coco_figures(dataset: Dataset, predictions: list[Box]) -> CocoFigures:
    """AP50 and mAP@[.5:.95] (max 100 detections per image, all areas) from faster-coco-eval's COCOeval."""
    from faster_coco_eval import COCO, COCOeval_faster

    results = [
        {"image_id": p.image_id, "category_id": p.category_id, "bbox": list(p.bbox), "score": p.score}
        for p in predictions
    ]
    nan = float("nan")
    if not results or not dataset.annotations:
        return CocoFigures(0.0, 0.0, {c: 0.0 for c in dataset.categories}, np.linspace(0, 1, 101), {})
    with contextlib.redirect_stdout(io.StringIO()):  # its summary table: the report has the figures
        gt = COCO(dataset.raw, use_deepcopy=True, print_function=_quiet)
        dt = gt.loadRes(results)
        ev = COCOeval_faster(gt, dt, "bbox", print_function=_quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = np.asarray(ev.eval["precision"])  # [iou, recall, class, area, max dets]
    cat_ids = list(ev.params.catIds)
    per_class: dict[int, float] = {}
    curves: dict[int, np.ndarray] = {}
    for k, cid in enumerate(cat_ids):
        curve = precision[0, :, k, 0, -1]
        curves[cid] = np.where(curve < 0, nan, curve)
        valid = curve[curve > -1]
        per_class[cid] = float(valid.mean()) if valid.size else 0.0
    stats = np.asarray(ev.stats)
    return CocoFigures(
        ap50=max(0.0, float(stats[1])),
        map50_95=max(0.0, float(stats[0])),
        per_class_ap50=per_class,
        recall_points=np.asarray(ev.params.recThrs),
        precision_at_50=curves,
    )


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval's progress and summary lines: the report has the figures."""


@dataclass(frozen=True)
class Evaluation:
    iou: float
    score: float
    precision: float
    recall: float
    f1: float
    ap50: float
    map50_95: float
    per_class: dict[str, dict[str, Any]]
    thresholds: np.ndarray  # score thresholds of the F1 curve
    f1_curve: np.ndarray  # overall F1 at each
    best_threshold: float
    best_f1: float
    confusion_names: list[str]
    confusion: np.ndarray
    coco: CocoFigures
    class_ids: dict[str, int]  # class name -> category id

    def summary(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "ap50": round(self.ap50, 4),
            "map50_95": round(self.map50_95, 4),
            "iou": self.iou,
            "score_threshold": self.score,
            "best_f1_threshold": round(self.best_threshold, 4),
            "best_f1": round(self.best_f1, 4),
            "per_class": self.per_class,
        }


def evaluate(dataset: Dataset, predictions: list[Box], iou: float = 0.5, score: float = 0.5) -> Evaluation:
    counts = match(dataset, predictions, iou)
    coco = coco_figures(dataset, predictions)
    per_class: dict[str, dict[str, Any]] = {}
    total = np.zeros(3, dtype=int)
    for cid in sorted(counts):
        tp, fp, fn = counts[cid].at(score)
        total += (tp, fp, fn)
        p, r, f = prf(tp, fp, fn)
        per_class[dataset.categories[cid]] = {
            "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "ap50": round(coco.per_class_ap50.get(cid, 0.0), 4),
            "tp": tp, "fp": fp, "fn": fn, "ground_truth": counts[cid].ground_truth,
        }  # fmt: skip
    p, r, f = prf(*(int(v) for v in total))
    thresholds = np.unique(np.concatenate([[0.0], [s for c in counts.values() for s in c.scores]]))
    curve = np.array(
        [prf(*np.sum([c.at(t) for c in counts.values()], axis=0, dtype=int).tolist())[2] for t in thresholds]
    )
    # the highest threshold reaching the best F1 (of equals, the one that keeps fewest false positives)
    best = len(curve) - 1 - int(np.argmax(curve[::-1])) if len(curve) else 0
    names, matrix = confusion(dataset, predictions, iou, score)
    return Evaluation(iou, score, p, r, f, coco.ap50, coco.map50_95, per_class, thresholds, curve,
                      float(thresholds[best]) if len(thresholds) else 0.0, float(curve[best]) if len(curve) else 0.0,
                      names, matrix, coco, {dataset.categories[c]: c for c in sorted(dataset.categories)})  # fmt: skip
