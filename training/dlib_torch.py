"""dlib's ResNet face descriptor as a trainable torch module, built from the same
parsed weights the ONNX converter uses (model_factory/facemodels/dlib_resnet.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_factory.facemodels.dlib_resnet import Layer, bottom_up, read_network


class _Affine(nn.Module):
    """dlib's affine layer: a frozen batch norm, kept trainable as scale and shift."""

    def __init__(self, gamma, beta):
        super().__init__()
        self.gamma = nn.Parameter(torch.from_numpy(np.asarray(gamma, np.float32)).view(1, -1, 1, 1))
        self.beta = nn.Parameter(torch.from_numpy(np.asarray(beta, np.float32)).view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.gamma + self.beta


def _pad_to(x, shape):
    extra = [t - s for s, t in zip(x.shape[1:], shape)]
    if not any(extra):
        return x
    return F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]))


class DlibResNet(nn.Module):
    """Input (N, 3, 150, 150) RGB 0..255; output the 128-d dlib descriptor."""

    def __init__(self, top: Layer):
        super().__init__()
        self.ops: list[tuple] = []
        self.layers = nn.ModuleList()
        for layer in bottom_up(top):
            p = layer.params
            if layer.kind == "input":
                self.register_buffer("mean", torch.tensor(p["mean"], dtype=torch.float32).view(1, 3, 1, 1))
                continue
            module: nn.Module | None = None
            if layer.kind == "con_4":
                conv = nn.Conv2d(p["weight"].shape[1], p["filters"], p["kernel"], p["stride"], p["padding"])
                conv.weight.data = torch.from_numpy(p["weight"].copy())
                conv.bias.data = torch.from_numpy(p["bias"].copy())  # type: ignore[union-attr]  # made with a bias
                module = conv
            elif layer.kind == "affine_":
                module = _Affine(p["gamma"], p["beta"])
            elif layer.kind == "fc_2":
                linear = nn.Linear(p["inputs"], p["outputs"], bias=p["bias"] is not None)
                linear.weight.data = torch.from_numpy(p["weight"].T.copy())
                if linear.bias is not None:
                    linear.bias.data = torch.from_numpy(p["bias"].copy())
                module = linear
            if module is not None:
                self.layers.append(module)
            self.ops.append((layer.kind, len(self.layers) - 1 if module is not None else None, p))

    @classmethod
    def from_dat(cls, path: str) -> DlibResNet:
        """The network of a dlib ``.dat`` file."""
        with open(path, "rb") as handle:
            return cls(read_network(handle.read()))

    def forward(self, chips):
        """Descriptors for a batch of chips (N, 3, 150, 150), RGB 0..255."""
        x = (chips - self.mean) / 256.0
        tags, last = {}, None
        for kind, index, p in self.ops:
            if index is not None and kind != "fc_2":
                x = self.layers[index](x)
            elif kind == "relu_":
                x = F.relu(x)
            elif kind in ("max_pool_2", "avg_pool_2"):
                (kh, kw), stride, padding = p["kernel"], p["stride"], p["padding"]
                if kh == 0 and kw == 0:
                    x = x.mean(dim=(2, 3), keepdim=True)
                elif kind == "max_pool_2":
                    x = F.max_pool2d(x, (kh, kw), stride, padding)
                else:
                    x = F.avg_pool2d(x, (kh, kw), stride, padding, count_include_pad=False)
            elif kind in ("tag1", "tag2"):
                tags[kind], last = x, kind
            elif kind == "skip":
                x = tags["tag1"]
            elif kind == "add_prev_":
                other = tags[last]
                shape = [max(a, b) for a, b in zip(x.shape[1:], other.shape[1:])]
                x = _pad_to(x, shape) + _pad_to(other, shape)
            elif kind == "fc_2":
                x = self.layers[index](x.flatten(1))
        return x
