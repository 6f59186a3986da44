"""An evaluation written out: report.md, and PNG plots made with matplotlib (precision-recall curve per class,
F1 against the score threshold with the best one marked, the confusion matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import Evaluation


def write_report(ev: Evaluation, out: Path, meta: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, cid in ev.class_ids.items():
        curve = ev.coco.precision_at_50.get(cid)
        if curve is None:
            continue
        ax.plot(ev.coco.recall_points, curve, label=f"{name} (AP50 {ev.coco.per_class_ap50.get(cid, 0.0):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    if ev.coco.precision_at_50:
        ax.legend(loc="lower left", fontsize="small")
    written.append(_save(fig, out / "pr_curves.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(ev.thresholds, ev.f1_curve)
    ax.axvline(ev.best_threshold, linestyle="--", color="grey")
    ax.set(xlabel="score threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02),
           title=f"F1 against the score threshold (best {ev.best_f1:.3f} at {ev.best_threshold:.3f})")  # fmt: skip
    ax.grid(alpha=0.3)
    written.append(_save(fig, out / "f1_threshold.png"))

    n = len(ev.confusion_names)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.7 * n), max(4.0, 1.3 + 0.6 * n)))
    ax.imshow(ev.confusion, cmap="Blues")
    ax.set_xticks(range(n), ev.confusion_names, rotation=45, ha="right")
    ax.set_yticks(range(n), ev.confusion_names)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"Confusion (IoU {ev.iou}, score >= {ev.score})", fontsize="medium")
    top = ev.confusion.max() or 1
    for (i, j), v in np.ndenumerate(ev.confusion):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    written.append(_save(fig, out / "confusion.png"))

    report = out / "report.md"
    report.write_text(markdown(ev, meta), encoding="utf-8")
    written.append(report)
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def markdown(ev: Evaluation, meta: dict[str, Any]) -> str:
    lines = [
        "# Evaluation",
        "",
        *(f"- {k}: {v}" for k, v in meta.items()),
        "",
        f"At IoU {ev.iou} and score >= {ev.score}: precision **{ev.precision:.4f}**, recall **{ev.recall:.4f}**, "
        f"F1 **{ev.f1:.4f}**. AP50 **{ev.ap50:.4f}**, mAP@[.5:.95] **{ev.map50_95:.4f}** (COCO evaluation). "
        f"The best F1 is {ev.best_f1:.4f}, at score threshold **{ev.best_threshold:.4f}**.",
        "",
        "| class | precision | recall | F1 | AP50 | TP | FP | FN | ground truth |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['ap50']:.4f} | {c['tp']} | "
            f"{c['fp']} | {c['fn']} | {c['ground_truth']} |"
            for name, c in ev.per_class.items()
        ),
        "",
        "![precision-recall](pr_curves.png) ![F1 against threshold](f1_threshold.png) ![confusion](confusion.png)",
        "",
    ]
    return "\n".join(lines)
