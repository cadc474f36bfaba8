"""facenet-pytorch's models, importable beside the CPU torch this machine installs.

PyPI's torchvision cannot load beside torch 2.13's CPU wheel, and facenet-pytorch
imports two things from it at import time: ``batched_nms`` (MTCNN stages one and
two) and ``transforms.functional`` (only for cropping, unused here).  Where the real
torchvision is missing, a minimal module supplies an exact pure-torch
``batched_nms`` (greedy IoU suppression in descending score order, per index);
everything else is facenet-pytorch's own code.  Where torchvision imports (a GPU
image, SageMaker's PyTorch container), it is used as is.
"""

from __future__ import annotations

import sys
import types

import torch


def _nms(boxes, scores, threshold):
    order = torch.argsort(scores, descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[iou <= threshold]
    return torch.as_tensor(keep, dtype=torch.long)


def batched_nms(boxes, scores, idxs, threshold):
    """Non-maximum suppression per class (``idxs``), as torchvision's."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _nms(boxes + offsets[:, None], scores, threshold)


def _ensure_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # absent, or the PyPI build that fails beside torch's CPU wheel
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    vars(boxes).update(batched_nms=batched_nms)
    vars(tv).update(ops=ops, transforms=transforms)
    vars(ops).update(boxes=boxes)
    vars(transforms).update(functional=functional)
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.ops": ops,
            "torchvision.ops.boxes": boxes,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


def facenet_mtcnn(min_face_size: int = 20):
    """facenet-pytorch's own MTCNN (the reference our ONNX detector is tested against)."""
    _ensure_torchvision()
    from facenet_pytorch import MTCNN

    return MTCNN(min_face_size=min_face_size, keep_all=True, post_process=False, device="cpu")


def inception_resnet_v1(state_dict_path: str | None = None) -> torch.nn.Module:
    """FaceNet's InceptionResnetV1 (512-d unit vectors from 160x160 chips standardised as (x-127.5)/128).

    ``state_dict_path``: pretrained weights, e.g. facenet-pytorch's VGGFace2 release
    ``20180402-114759-vggface2.pt`` (downloaded by hand where there is internet: this
    code never downloads); random initialisation without it.
    """
    _ensure_torchvision()
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    if state_dict_path:
        state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{state_dict_path} is not an InceptionResnetV1 state dict: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
    return model
