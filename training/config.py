"""One fine-tuning run's settings (JSON file, ``--set key=value`` overrides, or SageMaker hyperparameters)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .augment import AugmentConfig


@dataclass
class TrainConfig:
    """Everything a fine-tuning run is made of."""

    model: str = "dlib-resnet"  # dlib-resnet | facenet
    weights: str | None = None  # dlib .dat or InceptionResnetV1 state dict; default: see models.py
    input_size: int | None = None  # chip size ("resize"); default: the model's native size
    loss: str = "arcface"  # arcface | triplet | arcface+triplet
    arcface_scale: float = 30.0
    arcface_margin: float = 0.1  # additive angular margin, radians (see docs/training.md: chosen by validation)
    triplet_margin: float = 0.2
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 1e-5  # the network's learning rate (the seed's best was 1e-4 for FaceNet)
    head_lr: float = 1e-2  # ArcFace class centres (initialised at the class means)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    freeze_fraction: float = 0.5  # freeze this share of parameter tensors, input side first
    # Serve (and train on) normalise([embedding - mean face, anchor]) (dlib's transform), or, false,
    # the plain unit embedding (with a constant 0 appended, so the bundle format stays one).
    centre: bool = True
    epochs: int = 10
    batch_size: int = 32
    per_identity: int = 4  # photos of one person together in a batch
    max_steps_per_epoch: int | None = None
    select: str = "last"  # last: the final epoch's weights (the seed's way) | best-validation
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    validation_fraction: float = 0.15  # of the identities, per source
    evaluation_fraction: float = 0.4
    device: str = "auto"  # auto | cpu | cuda

    def to_dict(self) -> dict:
        """The settings as JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Settings from a dict (ValueError for an unknown name)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        values = dict(values)
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugmentConfig(**values["augmentation"])
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError for a setting out of range."""
        if self.loss not in ("arcface", "triplet", "arcface+triplet"):
            raise ValueError(f"loss must be arcface, triplet or arcface+triplet, not {self.loss!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, not {self.optimizer!r}")
        if self.select not in ("last", "best-validation"):
            raise ValueError(f"select must be last or best-validation, not {self.select!r}")
        if not 0 <= self.freeze_fraction <= 1:
            raise ValueError("freeze_fraction must be between 0 and 1")
        if self.epochs < 0 or self.batch_size < 2 or self.per_identity < 1:
            raise ValueError("epochs >= 0, batch_size >= 2 and per_identity >= 1 are needed")

    def with_overrides(self, pairs: Iterable[str]) -> TrainConfig:
        """``key=value`` strings; values are JSON (numbers, true/false, null) or plain strings."""
        values = self.to_dict()
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ValueError(f"expected key=value, got {pair!r}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key.startswith("augmentation."):
                values["augmentation"][key.split(".", 1)[1]] = value
            else:
                values[key] = value
        return TrainConfig.from_dict(values)
