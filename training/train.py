"""The fine-tuning loop: ArcFace (and/or triplet) loss, identity-grouped batches, a
checkpoint after every epoch that a rerun resumes from.  best.pt holds the weights
chosen by ``select``: the last epoch's, or those with the best validation AUC
(epoch 0, the starting weights, competes too)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model_factory import calibration
from model_factory.calibration import embed_transform, fit_transform

from .augment import augment
from .config import TrainConfig
from .data import ChipSet
from .evaluate import embed
from .models import Calibrated, Embedder, build_model, freeze_leading

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


def resolve_device(name: str) -> str:
    """``auto`` becomes cuda when there is one, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def identity_batches(labels: np.ndarray, batch_size: int, per_identity: int, generator: torch.Generator):
    """Shuffled batches in which a person's photos come in groups of up to ``per_identity``
    (a triplet miner needs positives in the batch; ArcFace does not mind)."""
    groups = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        idx = idx[torch.randperm(len(idx), generator=generator).numpy()]
        groups += [idx[i : i + per_identity] for i in range(0, len(idx), per_identity)]
    order = torch.randperm(len(groups), generator=generator).numpy()
    flat = np.concatenate([groups[i] for i in order])
    return [flat[i : i + batch_size] for i in range(0, len(flat) - 1, batch_size) if len(flat[i : i + batch_size]) > 1]


def fit_output(raw: np.ndarray, centre: bool = True) -> tuple[np.ndarray, float]:
    """The served output's mean face and anchor: fitted on ``raw`` (dlib's transform), or, without
    ``centre``, none (a zero mean and a zero anchor: the plain unit embedding)."""
    if centre:
        return fit_transform(raw)
    return np.zeros(raw.shape[1], np.float32), 0.0


def validation_auc(model: Embedder, chips: ChipSet, device: str, centre: bool = True) -> dict[str, float]:
    """The model's same-person pair AUC and accuracy on ``chips``."""
    raw = embed(model, chips.chips, device)
    mean, anchor = fit_output(raw, centre)
    pos, neg = calibration.pair_similarities(embed_transform(raw, mean, anchor), list(chips.identities))
    return calibration.report(pos, neg)


class Losses(torch.nn.Module):
    """The fine-tuning loss: ArcFace, triplet, or their sum."""

    def __init__(self, cfg: TrainConfig, num_classes: int, dim: int, class_means: torch.Tensor):
        super().__init__()
        from pytorch_metric_learning import distances, losses, miners

        self.arcface = self.triplet = None
        if "arcface" in cfg.loss:
            self.arcface = losses.ArcFaceLoss(
                num_classes, dim, margin=math.degrees(cfg.arcface_margin), scale=cfg.arcface_scale
            )
            # Start the class centres at the classes' mean embeddings: the loss is then
            # meaningful from step one and the pretrained features are not torn apart.
            self.arcface.W.data = F.normalize(class_means, dim=1).T.contiguous()
        if "triplet" in cfg.loss:
            self.triplet = losses.TripletMarginLoss(margin=cfg.triplet_margin, distance=distances.CosineSimilarity())
            self.miner = miners.BatchHardMiner(distance=distances.CosineSimilarity())

    def forward(self, embeddings, labels):
        """The loss of a batch."""
        total = embeddings.new_zeros(())
        if self.arcface is not None:
            total = total + self.arcface(embeddings, labels)
        if self.triplet is not None:
            total = total + self.triplet(embeddings, labels, self.miner(embeddings, labels))
        return total


def _settings(config: dict) -> dict:
    """What must match to resume: everything but the number of epochs (a run may be extended)."""
    return {k: v for k, v in config.items() if k != "epochs"}


@dataclass
class _Run:
    """What one training run holds between its steps."""

    model: Embedder
    served: Calibrated  # what the loss sees: the model behind the bundle's output transform
    loss_fn: Losses
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # batches
    aug_generator: torch.Generator  # augmentations
    train_set: ChipSet
    val_set: ChipSet
    labels: np.ndarray  # the train set's class per chip
    classes: list[str]
    frozen: int
    device: str
    history: list[dict] = field(default_factory=list)


def train(cfg: TrainConfig, chips: ChipSet, run_dir: Path, log=print, progress: bool = True) -> dict:
    """Train on the ``train`` chips, choose by ``validation`` AUC; resumable from ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _start(cfg, chips)
    start_epoch = (
        _resume(run, cfg, run_dir, log) if (run_dir / CHECKPOINT).exists() else _baseline(run, cfg, run_dir, log)
    )
    for epoch in range(start_epoch, cfg.epochs + 1):
        _epoch(run, cfg, epoch, run_dir, log, progress)
    return _choose(run, cfg, run_dir)


def _start(cfg: TrainConfig, chips: ChipSet) -> _Run:
    """The model, its loss and optimizer, seeded: the same settings give the same run."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    aug_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    model = build_model(cfg.model, cfg.weights, cfg.input_size).to(device)
    train_set, val_set = chips.role("train"), chips.role("validation")
    if chips.chips.shape[1] != model.input_size:
        raise ValueError(f"chips are {chips.chips.shape[1]} px, the model takes {model.input_size}")
    classes = sorted(set(train_set.identities))
    labels = np.array([classes.index(i) for i in train_set.identities])
    frozen = freeze_leading(model, cfg.freeze_fraction)

    # The loss sees the vectors search compares: the bundle's calibrated output, with the
    # reference mean and anchor of the starting weights (a resumed run recomputes the same).
    raw = embed(model, train_set.chips, device)
    mean, anchor = fit_output(raw, cfg.centre)
    served = Calibrated(model, mean, anchor).to(device)
    vectors = torch.from_numpy(embed_transform(raw, mean, anchor))
    means = torch.stack([vectors[torch.from_numpy(labels == c)].mean(0) for c in range(len(classes))])
    loss_fn = Losses(cfg, len(classes), model.dim + 1, means).to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    if list(loss_fn.parameters()):
        groups.append({"params": list(loss_fn.parameters()), "lr": cfg.head_lr})
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    return _Run(
        model, served, loss_fn, optimizer, generator, aug_generator, train_set, val_set, labels, classes, frozen, device
    )


def _resume(run: _Run, cfg: TrainConfig, run_dir: Path, log) -> int:
    """Load the last checkpoint; the epoch to go on from."""
    checkpoint_path = run_dir / CHECKPOINT
    state = torch.load(checkpoint_path, map_location=run.device, weights_only=False)
    if _settings(state["config"]) != _settings(cfg.to_dict()):
        raise ValueError(f"{checkpoint_path} was written with other settings; use a new run folder")
    run.model.load_state_dict(state["model"])
    run.loss_fn.load_state_dict(state["loss"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.generator.set_state(state["generator"].cpu())
    run.aug_generator.set_state(state["aug_generator"].cpu())
    run.history = state["history"]
    log(f"resuming after epoch {state['epoch']} from {checkpoint_path}")
    return state["epoch"] + 1


def _baseline(run: _Run, cfg: TrainConfig, run_dir: Path, log) -> int:
    """Epoch 0: the starting weights' validation AUC, and they are the best so far."""
    baseline = validation_auc(run.model, run.val_set, run.device, cfg.centre)
    run.history.append(
        {
            "epoch": 0,
            "train_loss": None,
            "val_auc": baseline["auc"],
            "val_accuracy": baseline["accuracy"],
            "seconds": 0.0,
        }
    )
    torch.save(run.model.state_dict(), run_dir / BEST)
    log(f"epoch 0 (starting weights): validation AUC {baseline['auc']:.4f}, accuracy {baseline['accuracy']:.4f}")
    return 1


def _epoch(run: _Run, cfg: TrainConfig, epoch: int, run_dir: Path, log, progress: bool) -> None:
    """One pass over the train set, its validation, the best weights and a checkpoint."""
    started = time.time()
    losses, steps = _steps(run, cfg, epoch, progress)
    train_seconds = time.time() - started
    val = validation_auc(run.model, run.val_set, run.device, cfg.centre)
    best_auc = max(h["val_auc"] for h in run.history)
    run.history.append(
        {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_auc": val["auc"],
            "val_accuracy": val["accuracy"],
            "seconds": round(train_seconds, 2),
            "steps": steps,
            "device": run.device,
        }
    )
    if val["auc"] > best_auc and cfg.select == "best-validation":
        torch.save(run.model.state_dict(), run_dir / BEST)
    log(
        f"epoch {epoch}: loss {run.history[-1]['train_loss']:.4f}, validation AUC {val['auc']:.4f} "
        f"(accuracy {val['accuracy']:.4f}), {train_seconds:.1f}s on {run.device}"
    )
    _checkpoint(run, cfg, epoch, run_dir)


def _steps(run: _Run, cfg: TrainConfig, epoch: int, progress: bool) -> tuple[list[float], int]:
    """The epoch's optimisation steps: each batch's loss, and how many batches."""
    from tqdm import tqdm

    run.model.train()
    batches = identity_batches(run.labels, cfg.batch_size, cfg.per_identity, run.generator)
    if cfg.max_steps_per_epoch:
        batches = batches[: cfg.max_steps_per_epoch]
    losses = []
    for idx in tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress, leave=False):
        x = torch.from_numpy(run.train_set.chips[idx]).permute(0, 3, 1, 2).float().to(run.device)
        if cfg.augment:
            x = augment(x, cfg.augmentation, run.aug_generator)
        y = torch.from_numpy(run.labels[idx]).to(run.device)
        loss = run.loss_fn(run.served(x), y)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        losses.append(float(loss.detach()))
    if run.device == "cuda":
        torch.cuda.synchronize()
    return losses, len(batches)


def _checkpoint(run: _Run, cfg: TrainConfig, epoch: int, run_dir: Path) -> None:
    """Everything a rerun resumes from, written whole or not at all."""
    partial = run_dir / (CHECKPOINT + ".tmp")
    torch.save(
        {
            "config": cfg.to_dict(),
            "epoch": epoch,
            "model": run.model.state_dict(),
            "loss": run.loss_fn.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "generator": run.generator.get_state(),
            "aug_generator": run.aug_generator.get_state(),
            "history": run.history,
        },
        partial,
    )
    partial.replace(run_dir / CHECKPOINT)


def _choose(run: _Run, cfg: TrainConfig, run_dir: Path) -> dict:
    """The weights ``cfg.select`` names become best.pt; the run's summary."""
    if cfg.select == "last":
        torch.save(run.model.state_dict(), run_dir / BEST)
        chosen = run.history[-1]
    else:
        chosen = max(run.history, key=lambda h: h["val_auc"])
    summary = {
        "history": run.history,
        "chosen_epoch": chosen["epoch"],
        "frozen_tensors": run.frozen,
        "device": run.device,
        "classes": len(run.classes),
        "train_faces": len(run.train_set),
        "validation_faces": len(run.val_set),
    }
    (run_dir / "history.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_best(cfg: TrainConfig, run_dir: Path, device: str = "cpu") -> Embedder:
    """The weights the run chose."""
    model = build_model(cfg.model, cfg.weights, cfg.input_size)
    model.load_state_dict(torch.load(run_dir / BEST, map_location=device, weights_only=True))
    return model.to(device).eval()
