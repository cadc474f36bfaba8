"""MTCNN face detection: the three-stage cascade in numpy over ONNX Runtime.

A port of facenet-pytorch's ``detect_face`` (image pyramid, P/R/O-net, box
regression, NMS, five landmarks) so that serving needs neither torch nor
torchvision.  Resampling is torch's ``area`` mode (adaptive average pooling),
and the NMS variants are the ones facenet-pytorch uses, so detections match it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """The faces found in one image: boxes, scores and five landmarks each."""

    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2 in image pixels
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray  # (K, 5, 2): left eye, right eye, nose, left and right mouth corners

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No face."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


class IntegralImage:
    """Summed-area table of an image, channels first: any box resized in torch's
    ``area`` mode (adaptive average pooling) at a cost proportional to the output."""

    def __init__(self, image: np.ndarray):
        """``image``: (H, W, C) uint8."""
        self.height, self.width = image.shape[:2]
        # Exact integer sums: int32 holds 255 * 8.4 MP; detection never sees more.
        dtype = np.int32 if self.height * self.width <= 8_000_000 else np.int64
        planes = np.ascontiguousarray(image.transpose(2, 0, 1))
        table = np.zeros((planes.shape[0], self.height + 1, self.width + 1), dtype=dtype)
        inner = table[:, 1:, 1:]
        np.cumsum(planes, axis=2, dtype=dtype, out=inner)
        np.cumsum(inner, axis=1, out=inner)
        self.table = table

    @staticmethod
    def _bounds(origin, length, size: int):
        i = np.arange(size)
        return origin + (i * length) // size, origin - ((-(i + 1) * length) // size)

    def resize(self, y0: int, x0: int, y1: int, x1: int, height: int, width: int) -> np.ndarray:
        """The box [y0, y1) x [x0, x1) as a (C, height, width) float32 array."""
        ys, ye = self._bounds(y0, y1 - y0, height)
        xs, xe = self._bounds(x0, x1 - x0, width)
        # np.take and in-place differences, then one float32 division: bit for bit the float64
        # quotient rounded, ~4x faster per scale than fancy indexing with fresh temporaries.
        rows = np.take(self.table, ye, axis=1)
        rows -= np.take(self.table, ys, axis=1)
        total = np.take(rows, xe, axis=2)
        total -= np.take(rows, xs, axis=2)
        count = ((ye - ys)[:, None] * (xe - xs)[None, :]).astype(np.float32)
        return np.divide(total, count, dtype=np.float32)

    def resize_many(self, y0, x0, y1, x1, size: int) -> np.ndarray:
        """Many boxes (arrays of K corners), each as a (C, size, size) crop: (K, C, size, size)."""
        i = np.arange(size)

        def bounds(origin, length):
            return (
                origin[:, None] + (i[None, :] * length[:, None]) // size,
                origin[:, None] - ((-(i[None, :] + 1) * length[:, None]) // size),
            )

        ys, ye = bounds(y0, y1 - y0)
        xs, xe = bounds(x0, x1 - x0)
        t = self.table

        def corner(yy, xx):
            return t[:, yy[:, :, None], xx[:, None, :]]  # (C, K, size, size)

        total = corner(ye, xe)
        total -= corner(ys, xe)
        total -= corner(ye, xs)
        total += corner(ys, xs)
        count = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)
        return np.divide(total, count, dtype=np.float32).transpose(1, 0, 2, 3)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C) float32, torch's ``area`` interpolation."""
    return IntegralImage(image).resize(0, 0, image.shape[0], image.shape[1], height, width).transpose(1, 2, 0)


def _iou_suppress(boxes, scores, threshold, plus_one: bool, use_min: bool) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    extra = 1.0 if plus_one else 0.0
    area = (x2 - x1 + extra) * (y2 - y1 + extra)
    order = np.argsort(-scores, kind="stable") if not use_min else np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + extra)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + extra)
        inter = w * h
        overlap = inter / np.minimum(area[i], area[rest]) if use_min else inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(boxes, scores, threshold) -> np.ndarray:
    """torchvision's NMS (IoU without the +1)."""
    return _iou_suppress(boxes, scores, threshold, plus_one=False, use_min=False)


def nms_min(boxes, scores, threshold) -> np.ndarray:
    """The original MTCNN's 'Min' suppression, used after the last stage."""
    return _iou_suppress(boxes, scores, threshold, plus_one=True, use_min=True)


def _square(boxes: np.ndarray) -> np.ndarray:
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] += reg[:, 0] * w
    boxes[:, 1] += reg[:, 1] * h
    boxes[:, 2] += reg[:, 2] * w
    boxes[:, 3] += reg[:, 3] * h
    return boxes


class MTCNN:
    """MTCNN's three stages on ONNX Runtime: proposals over an image pyramid, then two refinements."""

    def __init__(self, pnet, rnet, onet, thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709):
        """``pnet``/``rnet``/``onet`` are ONNX Runtime sessions (input ``pixels``)."""
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.thresholds = thresholds
        self.factor = factor

    def detect(self, image: np.ndarray, min_face_size: int = 20) -> Detections:
        """Faces in an (H, W, 3) uint8 RGB image."""
        img = IntegralImage(image)
        h, w = image.shape[:2]
        boxes = self._stage_one(img, h, w, min_face_size)
        if len(boxes):
            boxes = self._stage_two(img, h, w, boxes)
        if not len(boxes):
            return Detections.empty()
        return self._stage_three(img, h, w, boxes)

    def _scales(self, h: int, w: int, min_face_size: int) -> list[float]:
        m = 12.0 / min_face_size
        shortest = min(h, w) * m
        scales, scale = [], m
        while shortest >= 12:
            scales.append(scale)
            scale *= self.factor
            shortest *= self.factor
        return scales

    def _stage_one(self, img, h, w, min_face_size) -> np.ndarray:
        found = []
        for scale in self._scales(h, w, min_face_size):
            resized = img.resize(0, 0, h, w, int(h * scale + 1), int(w * scale + 1))
            reg, prob = self.pnet.run(None, {"pixels": resized[None]})
            boxes = self._candidates(reg[0], prob[0, 1], scale, self.thresholds[0])
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        if not len(boxes):
            return boxes
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * regw,
                boxes[:, 1] + boxes[:, 6] * regh,
                boxes[:, 2] + boxes[:, 7] * regw,
                boxes[:, 3] + boxes[:, 8] * regh,
                boxes[:, 4],
            ],
            axis=1,
        )
        return _square(refined)

    @staticmethod
    def _candidates(reg, prob, scale, threshold) -> np.ndarray:
        stride, cell = 2, 12
        ys, xs = np.nonzero(prob >= threshold)
        score = prob[ys, xs]
        offsets = reg[:, ys, xs].T
        q1x = np.floor((stride * xs + 1) / scale)
        q1y = np.floor((stride * ys + 1) / scale)
        q2x = np.floor((stride * xs + cell) / scale)
        q2y = np.floor((stride * ys + cell) / scale)
        return np.column_stack([q1x, q1y, q2x, q2y, score, offsets]).astype(np.float32)

    @staticmethod
    def _crops(img, boxes, size, h, w) -> tuple[np.ndarray, np.ndarray]:
        """Each box cropped (clamped to the image, as facenet-pytorch does) and area-resized."""
        ints = np.trunc(boxes[:, :4]).astype(np.int64)
        x = np.maximum(ints[:, 0], 1)
        y = np.maximum(ints[:, 1], 1)
        ex = np.minimum(ints[:, 2], w)
        ey = np.minimum(ints[:, 3], h)
        keep = (ey > y - 1) & (ex > x - 1)
        crops = img.resize_many(y[keep] - 1, x[keep] - 1, ey[keep], ex[keep], size)
        return np.ascontiguousarray(crops), keep

    def _stage_two(self, img, h, w, boxes) -> np.ndarray:
        batch, keep = self._crops(img, boxes, 24, h, w)
        boxes = boxes[keep]
        reg, prob = self.rnet.run(None, {"pixels": batch})
        passed = prob[:, 1] > self.thresholds[1]
        boxes = np.column_stack([boxes[passed, :4], prob[passed, 1]])
        reg = reg[passed]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_regress(boxes[pick], reg[pick]))

    def _stage_three(self, img, h, w, boxes) -> Detections:
        batch, keep = self._crops(img, boxes, 48, h, w)
        boxes = boxes[keep]
        reg, points, prob = self.onet.run(None, {"pixels": batch})
        passed = prob[:, 1] > self.thresholds[2]
        boxes = np.column_stack([boxes[passed, :4], prob[passed, 1]])
        reg, points = reg[passed], points[passed]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        px = bw[:, None] * points[:, :5] + boxes[:, 0:1] - 1
        py = bh[:, None] * points[:, 5:] + boxes[:, 1:2] - 1
        landmarks = np.stack([px, py], axis=2)
        boxes = _regress(boxes, reg)
        pick = nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return Detections(
            boxes[pick, :4].astype(np.float32), boxes[pick, 4].astype(np.float32), landmarks[pick].astype(np.float32)
        )
