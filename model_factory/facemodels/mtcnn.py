"""MTCNN's three networks rebuilt in torch from facenet-pytorch's shipped
``pnet.pt``/``rnet.pt``/``onet.pt`` state dicts, and exported to ONNX.

Only the bundle build needs torch; serving runs the ONNX files.  Each graph
takes raw RGB pixels (0..255, float32, NCHW) and normalises them itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import torch
from torch import nn


class _Spec(TypedDict):
    """One stage's layers: (name, layer) pairs whose names match the state dict's keys."""

    features: list[tuple[str, nn.Module]]
    dense: list[tuple[str, nn.Module]]
    heads: dict[str, tuple[str, nn.Module]]  # output name → its layer


_SPECS: dict[str, _Spec] = {
    "pnet": _Spec(
        features=[
            ("conv1", nn.Conv2d(3, 10, 3)),
            ("prelu1", nn.PReLU(10)),
            ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(10, 16, 3)),
            ("prelu2", nn.PReLU(16)),
            ("conv3", nn.Conv2d(16, 32, 3)),
            ("prelu3", nn.PReLU(32)),
        ],
        dense=[],
        heads={"reg": ("conv4_2", nn.Conv2d(32, 4, 1)), "prob": ("conv4_1", nn.Conv2d(32, 2, 1))},
    ),
    "rnet": _Spec(
        features=[
            ("conv1", nn.Conv2d(3, 28, 3)),
            ("prelu1", nn.PReLU(28)),
            ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(28, 48, 3)),
            ("prelu2", nn.PReLU(48)),
            ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(48, 64, 2)),
            ("prelu3", nn.PReLU(64)),
        ],
        dense=[("dense4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128))],
        heads={"reg": ("dense5_2", nn.Linear(128, 4)), "prob": ("dense5_1", nn.Linear(128, 2))},
    ),
    "onet": _Spec(
        features=[
            ("conv1", nn.Conv2d(3, 32, 3)),
            ("prelu1", nn.PReLU(32)),
            ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(32, 64, 3)),
            ("prelu2", nn.PReLU(64)),
            ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(64, 64, 3)),
            ("prelu3", nn.PReLU(64)),
            ("pool3", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv4", nn.Conv2d(64, 128, 2)),
            ("prelu4", nn.PReLU(128)),
        ],
        dense=[("dense5", nn.Linear(1152, 256)), ("prelu5", nn.PReLU(256))],
        heads={
            "reg": ("dense6_2", nn.Linear(256, 4)),
            "landmarks": ("dense6_3", nn.Linear(256, 10)),
            "prob": ("dense6_1", nn.Linear(256, 2)),
        },
    ),
}
INPUT_SIZES = {"pnet": None, "rnet": 24, "onet": 48}


class MTCNNStage(nn.Module):
    """One MTCNN stage (P-, R- or O-Net) in PyTorch, for the ONNX export."""

    def __init__(self, name: str):
        super().__init__()
        spec = _SPECS[name]
        self.stage = name
        for layer_name, layer in spec["features"] + spec["dense"]:
            self.add_module(layer_name, layer)
        for head_name, layer in spec["heads"].values():
            self.add_module(head_name, layer)
        self._features = [n for n, _ in spec["features"]]
        self._dense = [n for n, _ in spec["dense"]]
        self._heads = {out: n for out, (n, _) in spec["heads"].items()}

    def forward(self, pixels):
        """The stage's outputs for a batch of pixels (0..255)."""
        x = (pixels - 127.5) * 0.0078125
        for name in self._features:
            x = getattr(self, name)(x)
        if self._dense:
            # The original (Caffe) weights expect features flattened in (W, H, C) order.
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            for name in self._dense:
                x = getattr(self, name)(x)
        outputs = [getattr(self, self._heads[out])(x) for out in self._heads]
        outputs[-1] = torch.softmax(outputs[-1], dim=1)  # prob is always the last head
        return tuple(outputs)


def load_stage(name: str, weights_dir: Path) -> MTCNNStage:
    """A stage with facenet-pytorch's weights."""
    stage = MTCNNStage(name)
    stage.load_state_dict(torch.load(Path(weights_dir) / f"{name}.pt", map_location="cpu", weights_only=True))
    return stage.eval()


def facenet_weights_dir() -> Path:
    """facenet-pytorch's data folder, found without importing the package (it needs torchvision)."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def export_stage(name: str, weights_dir: Path, out_path: Path) -> None:
    """Write one stage as ONNX."""
    stage = load_stage(name, weights_dir)
    size = INPUT_SIZES[name] or 48
    example = torch.zeros(1, 3, size, size)
    heads = list(_SPECS[name]["heads"])
    dynamic = {"pixels": {0: "batch"} if INPUT_SIZES[name] else {0: "batch", 2: "height", 3: "width"}}
    for head in heads:
        dynamic[head] = {0: "batch", 2: "height", 3: "width"} if name == "pnet" else {0: "batch"}
    torch.onnx.export(
        stage,
        (example,),
        str(out_path),
        input_names=["pixels"],
        output_names=heads,
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )
