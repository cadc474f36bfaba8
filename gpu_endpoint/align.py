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

    A face much larger than the chip is first shrunk with a box filter, so the
    bilinear warp does not alias (dlib downsamples the same way before chipping)."""
    landmarks = np.asarray(landmarks, np.float64)
    matrix = similarity_transform(landmarks, template)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1 / scale) if scale < 0.5 else 1
    if factor > 1:
        image = image.reduce(factor)
        landmarks = landmarks / factor
        matrix = similarity_transform(landmarks, template)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    # Where the chip reaches past the photo (a tight crop, a face at the edge),
    # repeat the border pixels instead of leaving black, as dlib does for padded input.
    corners = inverse @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], dtype=np.float64)
    margin = int(np.ceil(max(0.0, -corners.min(), (corners[0] - image.size[0]).max(),
                             (corners[1] - image.size[1]).max()))) + 2
    if margin > 2:
        image = Image.fromarray(np.pad(np.asarray(image), ((margin, margin), (margin, margin), (0, 0)), mode="edge"))
        inverse[:, 2] += margin
    chip = image.transform((size, size), Image.Transform.AFFINE, inverse.ravel().tolist(), resample=Image.Resampling.BILINEAR)
    return np.asarray(chip, dtype=np.uint8)
