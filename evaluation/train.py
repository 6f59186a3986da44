"""`visionstream train`: a Keras image classifier from a folder-per-class dataset (Keras'
`image_dataset_from_directory` convention: DATA/<class>/<image>), exported as a SavedModel that the
`keras-classifier` detector loads as it is, with its label list and an evaluation report.

Preprocessing is inside the model (resize happens in the loader; rescaling, and augmentation while training:
flips, small rotations, zoom and contrast), so the exported model takes raw 0-255 pixels (`scale: raw`). It trains
from scratch by default (nothing can be downloaded here); `--backbone mobilenet_v2 --backbone-weights FILE` starts
from a local ImageNet weights file instead (transfer learning, the backbone frozen). Class weights balance uneven
classes; early stopping keeps the best epoch by validation loss.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    out: Path
    image_size: int = 96
    epochs: int = 20
    batch_size: int = 32
    validation_split: float = 0.2
    patience: int = 4
    learning_rate: float = 1e-3
    seed: int = 1337
    backbone: str = "small-cnn"  # or mobilenet_v2 (needs backbone_weights)
    backbone_weights: Path | None = None


def check_data(data: Path) -> dict[str, int]:
    """Images per class; a layout that cannot train is refused with one line."""
    if not data.is_dir():
        raise ValueError(f"{data}: not a folder (expected one sub-folder of images per class)")
    counts = {
        d.name: sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(data.iterdir())
        if d.is_dir()
    }
    if len(counts) < 2:
        raise ValueError(f"{data}: found {len(counts)} class folder(s); a classifier needs at least two")
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f"{data}: class folder {empty[0]!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return counts


def _model(opts: TrainOptions, classes: int) -> Any:
    import keras
    from keras import layers

    size = (opts.image_size, opts.image_size, 3)
    augment = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.05), layers.RandomZoom(0.1),
         layers.RandomContrast(0.2)],
        name="augmentation",
    )  # fmt: skip
    inputs = keras.Input(size, name="image")
    x = augment(inputs)
    if opts.backbone == "mobilenet_v2":
        if opts.backbone_weights is None or not opts.backbone_weights.is_file():
            raise ValueError("--backbone mobilenet_v2 needs --backbone-weights FILE (a local Keras weights file)")
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
        base = keras.applications.MobileNetV2(
            input_shape=size, include_top=False, weights=str(opts.backbone_weights), pooling="avg"
        )
        base.trainable = False
        x = base(x, training=False)
    elif opts.backbone == "small-cnn":
        x = layers.Rescaling(1 / 255)(x)
        for filters in (32, 64, 128):
            # (no batch normalisation: with the few batches of a small dataset its moving statistics lag, and
            # the validation accuracy of early epochs says nothing)
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(f"unknown backbone {opts.backbone!r}: small-cnn or mobilenet_v2")
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(classes, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(opts.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(opts: TrainOptions) -> dict[str, Any]:
    counts = check_data(opts.data)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(opts.seed)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        opts.data, validation_split=opts.validation_split, subset="both", seed=opts.seed,
        image_size=(opts.image_size, opts.image_size), batch_size=opts.batch_size, label_mode="int",
    )  # fmt: skip
    names = list(train_ds.class_names)
    labels = np.concatenate([y.numpy() for _, y in train_ds]) if opts.validation_split < 1 else np.array([])
    present = np.bincount(labels, minlength=len(names))
    # class weights: each class counts as much in the loss as if the classes were even
    weights = {i: float(len(labels) / (len(names) * n)) if n else 0.0 for i, n in enumerate(present)}
    model = _model(opts, len(names))
    # by validation loss, not accuracy: accuracy saturates on small sets while the model is still unsure (softmax
    # scores under a detector's threshold), and the loss keeps falling as it grows confident
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=opts.patience, restore_best_weights=True)
    seconds: list[float] = []
    started = [0.0]
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - started[0]),
    )
    history = model.fit(
        train_ds.cache().prefetch(tf.data.AUTOTUNE), validation_data=val_ds.cache(), epochs=opts.epochs,
        class_weight=weights, callbacks=[stop, timer], verbose=1 if sys.stdout.isatty() else 2,
    )  # fmt: skip
    val_images, val_labels = [], []
    for x, y in val_ds:
        val_images.append(x.numpy())
        val_labels.append(y.numpy())
    truth = np.concatenate(val_labels)
    predicted = np.argmax(model.predict(np.concatenate(val_images), verbose=0), axis=1)
    opts.out.mkdir(parents=True, exist_ok=True)
    saved = opts.out / "saved_model"
    model.export(str(saved), verbose=False)
    (opts.out / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    detector = {"type": "keras-classifier", "options": {"model_path": str(saved.resolve()),
                "labels": str((opts.out / "labels.txt").resolve()), "scale": "raw", "score_threshold": 0.5}}  # fmt: skip
    (opts.out / "detector.json").write_text(json.dumps(detector, indent=2) + "\n", encoding="utf-8")
    report = classification_report(names, truth, predicted)
    best = int(np.argmin(history.history["val_loss"]))
    result = {
        "classes": names,
        "images_per_class": counts,
        "epochs_run": len(history.history["val_loss"]),
        "best_epoch": best + 1,
        "train_accuracy": round(float(history.history["accuracy"][best]), 4),
        "seconds_per_epoch": round(float(np.mean(seconds)), 2) if seconds else None,
        "model": str(saved),
        "labels": str(opts.out / "labels.txt"),
        "detector": detector,
        **report,
    }
    write_training_report(opts.out, result, truth, predicted)
    return result


def classification_report(names: list[str], truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Validation precision, recall and F1 per class, overall accuracy and the confusion matrix (true x predicted)."""
    from evaluation.metrics import prf

    per_class = {}
    for i, name in enumerate(names):
        tp = int(((predicted == i) & (truth == i)).sum())
        fp = int(((predicted == i) & (truth != i)).sum())
        fn = int(((predicted != i) & (truth == i)).sum())
        p, r, f = prf(tp, fp, fn)
        per_class[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": tp + fn}
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[int(t), int(p)] += 1
    return {
        "val_images": len(truth),
        # of the model as exported (the best epoch's weights), on the validation split
        "val_accuracy": round(float((truth == predicted).mean()) if len(truth) else 0.0, 4),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def write_training_report(out: Path, r: dict[str, Any], truth: np.ndarray, predicted: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = r["classes"]
    matrix = np.asarray(r["confusion"])
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.7 * n), max(4.0, 1.3 + 0.6 * n)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title("Validation confusion", fontsize="medium")
    top = matrix.max() or 1
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)
    rows = [
        f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
        for name, c in r["per_class"].items()
    ]
    (out / "report.md").write_text(
        "\n".join([
            "# Training", "",
            f"- classes: {', '.join(names)} (images: {r['images_per_class']})",
            f"- epochs run: {r['epochs_run']}, best: {r['best_epoch']} ({r['seconds_per_epoch']} s per epoch)",
            f"- validation accuracy: **{r['val_accuracy']:.4f}** on {r['val_images']} images; macro F1 {r['macro_f1']:.4f}",
            f"- model: `{r['model']}` (labels `{r['labels']}`); detector settings in `detector.json`",
            "", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |", *rows, "",
            "![confusion](confusion.png)", "",
        ]),
        encoding="utf-8",
    )  # fmt: skip
