"""The calibrated output every embedder part of the bundle serves: ``normalise([v - mean, anchor])``
appended to a graph whose one output is a batch of vectors ``v``; ``mean`` and ``anchor`` are fitted
on the calibration identities (``calibration.fit_transform``; ``calibration.embed_transform`` is the
same transform in numpy).

Why the anchor: raw descriptors sit in a narrow cone (dlib's different people score ~0.83 cosine,
faceres's ~0.6). Centring alone and L2-normalising spreads them but throws away the distance to the
mean and separates people worse; one constant extra coordinate keeps the geometry close to Euclidean
while the cosine range opens up.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTPUT = "calibrated"


def append_output_transform(model: onnx.ModelProto, mean: np.ndarray, anchor: float) -> onnx.ModelProto:
    """A copy of ``model`` whose output is the calibrated (dim + 1) unit vector."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    (raw,) = [o.name for o in graph.output]
    mean = np.asarray(mean, np.float32).reshape(1, -1)
    graph.initializer.extend(
        [
            numpy_helper.from_array(mean, "reference_mean"),
            numpy_helper.from_array(np.asarray([0, 0, 0, 1], np.int64), "anchor_pads"),
            numpy_helper.from_array(np.asarray(anchor, np.float32), "anchor"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Sub", [raw, "reference_mean"], ["centred"]),
            helper.make_node("Pad", ["centred", "anchor_pads", "anchor"], ["anchored"], mode="constant"),
            helper.make_node("LpNormalization", ["anchored"], [OUTPUT], axis=1, p=2),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", mean.shape[1] + 1]))
    onnx.checker.check_model(out)
    return out
