"""Training-time augmentation of chip batches, in torch (CPU or GPU), from one generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """How training chips are varied."""

    flip: bool = True
    brightness: float = 0.2  # multiply by 1 ± this
    contrast: float = 0.2
    saturation: float = 0.2
    rotate_degrees: float = 8.0
    scale: float = 0.05  # zoom 1 ± this
    shift: float = 0.04  # fraction of the chip


def _uniform(n, spread, generator, device):
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * spread


def augment(batch: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, 3, S, S) RGB 0..255 → the same, randomly flipped, moved and recoloured."""
    n, device = batch.shape[0], batch.device
    if cfg.flip:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    angle = _uniform(n, math.radians(cfg.rotate_degrees), generator, device)
    zoom = 1 + _uniform(n, cfg.scale, generator, device)
    shift = torch.stack([_uniform(n, 2 * cfg.shift, generator, device) for _ in range(2)], 1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def factor(spread):
        return (1 + _uniform(n, spread, generator, device))[:, None, None, None]

    batch = batch * factor(cfg.brightness)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    batch = (batch - mean) * factor(cfg.contrast) + mean
    gray = (batch * torch.tensor([0.299, 0.587, 0.114], device=device)[None, :, None, None]).sum(1, keepdim=True)
    batch = (batch - gray) * factor(cfg.saturation) + gray
    return batch.clamp(0, 255)
