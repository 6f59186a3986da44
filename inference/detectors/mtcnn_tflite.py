"""MTCNN's three networks run by TensorFlow Lite (XNNPACK) instead of Keras, inside the `mtcnn` package's stages.

Profiling the default path on 640x480 frames showed most of the time outside the arithmetic: Keras pays a fixed
cost per eager call (about 10 ms here even for a 13x17 pyramid level, and PNet is called once per level, ten times
per frame). The same weights converted to a TensorFlow Lite flatbuffer and run by its interpreter (XNNPACK is its
default CPU delegate) give the same boxes to float rounding at a fraction of the time (`python -m bench live`).

The conversion happens in memory at load (about a second per network) from the weights in the `mtcnn` wheel;
nothing is downloaded or written. The stages stay the package's own (pyramid, NMS, box regression): only the model
each stage calls is replaced, through the stage's public constructor.
"""

from __future__ import annotations

import tempfile
import threading
import warnings
from typing import Any

import numpy as np

from inference.detectors.common import quiet_tensorflow

# Input of each network: PNet is fully convolutional (any size), RNet and ONet take 24x24 and 48x48 patches.
INPUT_SHAPES: dict[str, tuple[int | None, ...]] = {
    "pnet": (None, None, None, 3),
    "rnet": (None, 24, 24, 3),
    "onet": (None, 48, 48, 3),
}
MAX_INTERPRETERS = 128  # per network: pyramid levels x image sizes x batch sizes seen; rebuilt when exceeded


def convert(model: Any, input_shape: tuple[int | None, ...]) -> bytes:
    """A built Keras model as a TensorFlow Lite flatbuffer, through a SavedModel export (Keras 3's public path)."""
    import tensorflow as tf

    with quiet_tensorflow(), tempfile.TemporaryDirectory(prefix="vs-mtcnn-") as tmp:
        model.export(tmp, input_signature=[tf.TensorSpec(input_shape, tf.float32)], verbose=False)
        return bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())


class LiteNetwork:
    """Callable like the Keras model it replaces: a float32 batch in, the model's outputs (as tensors) out.

    TensorFlow Lite plans memory for one input shape, so there is one interpreter per shape seen. RNet's and
    ONet's batch is the number of candidate boxes, which varies with every frame: it is padded up to a power of
    two so a handful of interpreters serve every count.
    """

    def __init__(self, flatbuffer: bytes, threads: int, pad_batch: bool) -> None:
        self._flatbuffer = flatbuffer
        self._threads = threads
        self._pad_batch = pad_batch
        self._runners: dict[tuple[int, ...], Any] = {}
        signature = self._interpreter().get_signature_runner()
        self._input_name = next(iter(signature.get_input_details()))
        self._outputs = signature.get_output_details()
        # The signature names outputs output_0, output_1, ... in the Keras model's order.
        self._output_names = sorted(self._outputs, key=lambda name: int(name.rsplit("_", 1)[1]))

    def _interpreter(self) -> Any:
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter announces its successor, LiteRT
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_content=self._flatbuffer, num_threads=self._threads)

    def _runner(self, shape: tuple[int, ...]) -> Any:
        runner = self._runners.get(shape)
        if runner is None:
            if len(self._runners) >= MAX_INTERPRETERS:
                self._runners.clear()
            interpreter = self._interpreter()
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], shape)
            interpreter.allocate_tensors()
            runner = self._runners[shape] = interpreter.get_signature_runner()
        return runner

    def __call__(self, batch: Any) -> list[Any]:
        import tensorflow as tf

        x = np.asarray(batch, dtype=np.float32)
        n = x.shape[0]
        if n == 0:  # no candidates: empty outputs of the right shapes, as Keras gives
            return [
                tf.zeros([0, *(int(d) for d in self._outputs[k]["shape_signature"][1:])], tf.float32)
                for k in self._output_names
            ]
        if self._pad_batch:
            padded = 1 << (n - 1).bit_length()
            if padded != n:
                x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        out = self._runner(x.shape)(**{self._input_name: x})
        return [tf.convert_to_tensor(out[k][:n]) for k in self._output_names]


class _FloatTensorInput:
    """Mixed into a stage: its input images become a float32 tensor before the stage's own logic runs.

    The package normalises the frame to a float64 NumPy array, and each PNet pyramid level and each patch
    extraction converted it to a tensor again (a quarter of the inference worker's samples under py-spy, gated
    cameras) and resized it in float64. The networks take float32 either way. The three stages of one call get the
    same array, so the last conversion is kept (per thread, shared by the stages of one detector) and reused."""

    _last: threading.local  # .array, .tensor: the last call's, set per detector by lite_stages

    def __call__(self, *args: Any, images_normalized: Any, **kwargs: Any) -> Any:
        import tensorflow as tf

        last = self._last
        if getattr(last, "array", None) is not images_normalized:
            last.array, last.tensor = images_normalized, tf.convert_to_tensor(images_normalized, dtype=tf.float32)
        return super().__call__(*args, images_normalized=last.tensor, **kwargs)  # type: ignore[misc]


def lite_stages(threads: int) -> list[Any]:
    """The `mtcnn` package's three stages, each with its network converted to TensorFlow Lite."""
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    stages = []
    last = threading.local()
    for base, key in ((StagePNet, "pnet"), (StageRNet, "rnet"), (StageONet, "onet")):
        cls = type(base.__name__, (_FloatTensorInput, base), {"_last": last})
        stage = cls()
        network = LiteNetwork(convert(stage.model, INPUT_SHAPES[key]), threads, pad_batch=key != "pnet")
        # StageBase's constructor is how a stage is given its model; the stage's own logic is kept.
        super(base, stage).__init__(stage_name=stage.name, stage_id=stage.id, model=network)
        stages.append(stage)
    return stages
