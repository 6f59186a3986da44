"""TensorFlow.js graph models (`model.json` + weight shards) converted to TensorFlow SavedModels.

A TF.js graph model is a TensorFlow GraphDef written as JSON with the constants' values taken out into binary
shards (float32 weights often quantised to float16), plus a few ops TF.js fuses for itself. Conversion puts the
values back into the Const nodes, splits the fused ops into the TensorFlow ops they stand for, drops the NCHW/NHWC
turns a model exported from PyTorch makes around each convolution, imports the graph and saves one function from
the model's inputs to its outputs as a SavedModel. It runs once, when the model is
fetched (cli/models.py); detectors load the SavedModel. The converted outputs are checked against TF.js itself
running the original model in Node (tests/unit/test_tfjs_models.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from inference.detectors.common import quiet_tensorflow

# Bumped whenever conversion changes what it makes: a cached model of another version is converted again.
CONVERTER_VERSION = 2
# TF.js weight dtypes and their numpy counterparts (a quantised weight is stored as its `quantization.dtype`)
DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8, "bool": np.bool_}
# Activations TF.js fuses after a convolution's bias, as TensorFlow ops of one input
ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"}
FUSED_CONVOLUTIONS = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}


class ConversionError(ValueError):
    """The TF.js model uses something this converter does not handle; the message names it."""


def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest as an array of its original dtype (float16 shards widened to float32)."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            quantised = spec.get("quantization")
            stored = (quantised or {}).get("dtype", spec["dtype"])
            if stored not in DTYPES:
                raise ConversionError(f"weight {spec['name']}: stored dtype {stored!r} is not supported")
            if quantised and ("scale" in quantised or "min" in quantised):
                raise ConversionError(f"weight {spec['name']}: affine-quantised weights are not supported")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            size = count * np.dtype(DTYPES[stored]).itemsize
            if offset + size > len(data):
                raise ConversionError(f"weight {spec['name']} runs past the end of {group['paths']}")
            array = np.frombuffer(data, DTYPES[stored], count, offset).reshape(spec["shape"])
            weights[spec["name"]] = array.astype(DTYPES[spec["dtype"]])
            offset += size
        if offset != len(data):
            raise ConversionError(
                f"{group['paths']}: {len(data) - offset} bytes left over after the manifest's weights"
            )
    return weights


def _strings(attr: dict[str, Any]) -> list[str]:
    return [base64.b64decode(s).decode() for s in attr.get("list", {}).get("s", [])]


def _split_fused(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A fused convolution as convolution -> BiasAdd -> activation, the last keeping the node's name."""
    attr = node["attr"]
    fused = _strings(attr["fused_ops"])
    if not fused or fused[0] != "BiasAdd" or len(fused) > 2 or (len(fused) == 2 and fused[1] not in ACTIVATIONS):
        raise ConversionError(f"{node['name']}: fused ops {fused} are not supported (BiasAdd [+ activation])")
    if int(attr.get("num_args", {}).get("i", 1)) != 1:
        raise ConversionError(f"{node['name']}: {attr['num_args']} extra arguments (expected the bias only)")
    x, kernel, bias = node["input"][:3]
    dtype = {"type": attr["T"]["type"]}
    keep = ("strides", "padding", "data_format", "dilations", "explicit_paddings")
    conv_attr = {k: v for k, v in attr.items() if k in keep and (k != "explicit_paddings" or v.get("list"))}
    name = node["name"]
    conv = {"name": f"{name}/conv", "op": FUSED_CONVOLUTIONS[node["op"]], "input": [x, kernel],
            "attr": {**conv_attr, "T": dtype}}  # fmt: skip
    biased = {"name": name if len(fused) == 1 else f"{name}/bias", "op": "BiasAdd", "input": [conv["name"], bias],
              "attr": {"T": dtype, **({"data_format": attr["data_format"]} if "data_format" in attr else {})}}  # fmt: skip
    out = [conv, biased]
    if len(fused) == 2:
        act_attr: dict[str, Any] = {"T": dtype}
        if fused[1] == "LeakyRelu":
            act_attr["alpha"] = {"f": attr.get("leakyrelu_alpha", {}).get("f", 0.2)}
        out.append({"name": name, "op": fused[1], "input": [biased["name"]], "attr": act_attr})
    return out


TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
UNARY = {"LeakyRelu", "Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "Identity"}
BINARY = {"Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum"}


def sink_transposes(nodes: list[dict[str, Any]], weights: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Models that came to TF.js from PyTorch through ONNX keep their tensors in NCHW and turn each one to NHWC and
    back around every convolution. This computes, for each NCHW tensor that ends in a turn to NHWC, the NHWC tensor
    it stands for instead (through element-wise ops, Pad and ConcatV2, whose constants are permuted), and feeds the
    convolutions that: the pairs of transposes drop out of the graph that runs. Anything else keeps its NCHW input."""
    by_name = {n["name"]: n for n in nodes}
    added: list[dict[str, Any]] = []

    def const(tensor: str) -> np.ndarray | None:
        node = by_name.get(tensor.split(":")[0])
        return weights.get(node["name"]) if node is not None and node["op"] == "Const" else None

    def perm(node: dict[str, Any]) -> list[int] | None:
        value = const(node["input"][1]) if node["op"] == "Transpose" and len(node["input"]) == 2 else None
        return [int(v) for v in value] if value is not None else None

    def copy_const(tensor: str, value: np.ndarray) -> str:
        node = by_name[tensor.split(":")[0]]
        made = {**node, "name": f"{node['name']}/nhwc"}
        if made["name"] not in by_name:
            weights[made["name"]] = value
            by_name[made["name"]] = made
            added.append(made)
        return str(made["name"])

    def clone(node: dict[str, Any], inputs: list[str]) -> str:
        made = {**node, "name": f"{node['name']}/nhwc", "input": inputs}
        by_name[made["name"]] = made
        added.append(made)
        return str(made["name"])

    found: dict[str, str | None] = {}

    def nhwc(tensor: str) -> str | None:
        """The NHWC tensor equal to the NCHW `tensor` transposed, made from NHWC inputs; None if not derivable."""
        if tensor in found:
            return found[tensor]
        name, _, port = tensor.partition(":")
        node = by_name.get(name)
        out: str | None = None
        if node is not None and port in ("", "0") and not tensor.startswith("^"):
            op, inputs = node["op"], node.get("input", [])
            if op == "Transpose" and perm(node) == TO_NCHW:
                out = inputs[0]
            elif op in UNARY and len(inputs) == 1:
                x = nhwc(inputs[0])
                out = clone(node, [x]) if x else None
            elif op in BINARY and len(inputs) == 2 and all(const(i) is None for i in inputs):
                xs = [nhwc(i) for i in inputs]
                out = clone(node, [x for x in xs if x]) if all(xs) else None
            elif op in ("Pad", "PadV2") and (pads := const(inputs[1])) is not None and pads.shape == (4, 2):
                x = nhwc(inputs[0])
                out = clone(node, [x, copy_const(inputs[1], pads[TO_NHWC]), *inputs[2:]]) if x else None
            elif op == "ConcatV2" and (axis := const(inputs[-1])) is not None and int(axis) in (1, -3):
                xs = [nhwc(i) for i in inputs[:-1]]
                if all(xs):
                    out = clone(node, [*(x for x in xs if x), copy_const(inputs[-1], np.asarray(3, axis.dtype))])
        found[tensor] = out
        return out

    alias = {}
    for node in nodes:
        if node["op"] == "Transpose" and perm(node) == TO_NHWC and (x := nhwc(node["input"][0])):
            alias[node["name"]] = x
    for node in [*nodes, *added]:
        node["input"] = [alias.get(i, alias.get(i[:-2], i) if i.endswith(":0") else i) for i in node.get("input", [])]
    return [*nodes, *added]


def graph_def(model: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    """The model's GraphDef with its constants filled in and TF.js's fused convolutions split."""
    import tensorflow as tf
    from google.protobuf import json_format

    nodes: list[dict[str, Any]] = []
    for node in model["modelTopology"]["node"]:
        if node["op"] in FUSED_CONVOLUTIONS:
            nodes += _split_fused(node)
        else:
            nodes.append(node)
    topology = {**model["modelTopology"], "node": sink_transposes(nodes, weights)}
    try:
        graph = json_format.ParseDict(topology, tf.compat.v1.GraphDef())
    except json_format.ParseError as exc:
        raise ConversionError(f"the model's topology is not a GraphDef: {exc}") from exc
    filled = set()
    for node in graph.node:
        if node.op == "Const" and node.name in weights:
            # TF.js keeps int64 constants as int32: back to the dtype the node declares
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))
            filled.add(node.name)
    missing = sorted(set(weights) - filled)
    if missing:
        raise ConversionError(f"weights with no Const node of their name: {missing[:5]}")
    return graph


def convert(model_json: Path, out: Path) -> dict[str, Any]:
    """Convert `model_json` (with its shards beside it) to a SavedModel at `out`, its signature `serving_default`
    from the model's inputs to its outputs (named as in the TF.js signature, without `:0`). Returns the signature
    as {"inputs": {name: [shape, dtype]}, "outputs": {...}}."""
    import tensorflow as tf

    model = json.loads(model_json.read_text())
    if model.get("format") != "graph-model":
        raise ConversionError(f"{model_json} is a {model.get('format')!r}, not a TF.js graph model")
    graph = graph_def(model, read_weights(model["weightsManifest"], model_json.parent))
    signature = model["signature"]

    def spec(entry: dict[str, Any]) -> tuple[list[int], str]:
        dims = [int(d.get("size", -1)) for d in entry.get("tensorShape", {}).get("dim", [])]
        return dims, tf.dtypes.as_dtype(tf.dtypes.DType(_DT[entry["dtype"]])).name

    inputs = {entry["name"].split(":")[0]: spec(entry) for entry in signature["inputs"].values()}
    outputs = {entry["name"].split(":")[0]: spec(entry) for entry in signature["outputs"].values()}

    def imported() -> None:
        tf.compat.v1.import_graph_def(graph, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    g = wrapped.graph
    order = list(inputs)
    function = wrapped.prune(
        [g.get_tensor_by_name(f"{name}:0") for name in order],
        {name: g.get_tensor_by_name(f"{name}:0") for name in outputs},
    )
    module = tf.Module()
    module.function = function
    input_specs = {name: tf.TensorSpec([d if d > 0 else None for d in shape], dtype, name=name)
                   for name, (shape, dtype) in inputs.items()}  # fmt: skip

    @tf.function(input_signature=[input_specs])
    def serve(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(module.function(*[feeds[name] for name in order]))

    with quiet_tensorflow():
        tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    return {"inputs": inputs, "outputs": outputs}


def to_tflite(saved_model: Path) -> bytes:
    """A converted SavedModel as a TensorFlow Lite flatbuffer (its float32 ops, for the XNNPACK delegate)."""
    import tensorflow as tf

    with quiet_tensorflow():
        return bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())


# TensorFlow's DataType enum values of the names TF.js signatures use
_DT = {"DT_FLOAT": 1, "DT_INT32": 3, "DT_UINT8": 4, "DT_BOOL": 10, "DT_HALF": 19}
