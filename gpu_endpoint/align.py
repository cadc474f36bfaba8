"""Five-point face alignment: a similarity transform onto the embedder's template."""

from __future__ import annotations

import numpy as np
from PIL import Image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity (rotation, uniform scale,
    translation; no reflection) taking ``src`` points onto ``dst`` (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def warp_chip(image: Image.Image, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """The aligned (size, size, 3) uint8 RGB chip of one face.

    Only the region under the chip is touched: where it reaches past the photo
    (a tight crop, a face at the edge) the border pixels are repeated instead
    of leaving black, and a face much larger than the chip is first shrunk
    with a box filter so the bilinear warp does not alias (dlib, too,
    downsamples before chipping)."""
    matrix = similarity_transform(np.asarray(landmarks, np.float64), template)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    corners = inverse @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], dtype=np.float64)
    x0, y0 = np.floor(corners.min(axis=1)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=1)).astype(int) + 2
    width, height = image.size
    inside = image.crop((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
    region = np.asarray(inside)
    pads = ((max(0, -y0), max(0, y1 - height)), (max(0, -x0), max(0, x1 - width)), (0, 0))
    if any(p for pair in pads[:2] for p in pair):
        region = np.pad(region, pads, mode="edge")
    crop = Image.fromarray(region)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1 / scale) if scale < 0.5 else 1
    if factor > 1:
        crop = crop.reduce(factor)
    # chip -> crop coordinates: shift by the crop's origin, then shrink by the factor.
    to_crop = inverse.copy()
    to_crop[:, 2] -= (x0, y0)
    to_crop /= factor
    chip = crop.transform(
        (size, size), Image.Transform.AFFINE, to_crop.ravel().tolist(), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(chip, dtype=np.uint8)
