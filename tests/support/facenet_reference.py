"""facenet-pytorch's own MTCNN as a reference detector, importable beside torch 2.13.

PyPI's torchvision cannot load beside the CPU torch this machine installs, and
facenet-pytorch imports two things from it: ``batched_nms`` (for stages one
and two) and ``transforms.functional`` (only for cropping, unused here).  A
minimal ``torchvision`` module supplies an exact pure-torch ``batched_nms``
(greedy IoU suppression in descending score order, per index); everything
else is facenet-pytorch's code and weights.
"""
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
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return _nms(boxes + offsets[:, None], scores, threshold)


def install_torchvision_shim() -> None:
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms = batched_nms
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
                        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional})


def facenet_mtcnn(min_face_size: int = 20):
    install_torchvision_shim()
    from facenet_pytorch import MTCNN

    return MTCNN(min_face_size=min_face_size, keep_all=True, post_process=False, device="cpu")
