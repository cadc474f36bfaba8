"""Training data: labelled photos → face chips aligned by the serving engine, cached.

A data set is a folder per person (``root/<name>/*.jpg``) or ../shared/facedata
(its manifest).  Identities, never photos, are split into the three roles:
``train`` (fitted on), ``validation`` (model choice and threshold calibration)
and ``evaluation`` (reported only), stratified by source so that a small
domain such as the kpop photos lands in every role.  For ../shared/facedata the
evaluation identities are exactly the bundle's held-out ones
(``LabelledPhoto.split``): what the search benchmarks report as held out is never
trained on, and the bundle's calibration identities are never evaluated on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_endpoint.bundle import Manifest
from model_factory.facedata import decode, labelled_photos, largest_faces, normalise_identity

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".heic", ".heif"}
ROLES = ("train", "validation", "evaluation")


@dataclass(frozen=True)
class Sample:
    """One labelled photo to cut a chip from."""

    path: Path
    identity: str
    source: str
    held_out: bool | None = None  # the bundle's split (facedata only): held-out identities


def load_samples(data: Path) -> list[Sample]:
    """Every labelled photo of a facedata folder (by its manifest) or of a folder per person."""
    data = Path(data).resolve()
    if (data / "manifest.tsv").exists():
        return [Sample(p.path, p.identity, p.source, p.split == "holdout") for p in labelled_photos(data)]
    people = sorted(d for d in data.iterdir() if d.is_dir())
    samples = [
        Sample(f, normalise_identity(data.name, person.name), data.name)
        for person in people
        for f in sorted(person.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"{data}: no photos found; expected {data}/<person>/<photo>.jpg")
    return samples


def _rank(identity: str) -> str:
    return hashlib.sha1(identity.encode()).hexdigest()


def assign_roles(
    identities_by_source: Mapping[str, Sequence[str]],
    validation_fraction: float,
    evaluation_fraction: float,
    held_out: Collection[str] = (),
) -> dict[str, str]:
    """Identity → role.  ``held_out`` identities are evaluation; within each source, the
    others in a stable hashed order: the first share is evaluation, the next validation,
    the rest train."""
    roles: dict[str, str] = {identity: "evaluation" for identity in held_out}
    for source in sorted(identities_by_source):
        ids = sorted({i for i in identities_by_source[source] if i not in roles}, key=_rank)
        n_eval = int(round(len(ids) * evaluation_fraction))
        n_val = int(round(len(ids) * validation_fraction))
        for k, identity in enumerate(ids):
            roles[identity] = "evaluation" if k < n_eval else "validation" if k < n_eval + n_val else "train"
    return roles


def sample_roles(samples: Sequence[Sample], validation_fraction: float, evaluation_fraction: float) -> dict[str, str]:
    """Identity → role; where the samples carry the bundle's split, it alone decides evaluation."""
    by_source = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s.identity)
    if any(s.held_out is not None for s in samples):
        return assign_roles(by_source, validation_fraction, 0.0, {s.identity for s in samples if s.held_out})
    return assign_roles(by_source, validation_fraction, evaluation_fraction)


@dataclass
class ChipSet:
    """Aligned face chips (N, S, S, 3) uint8 RGB with their labels."""

    chips: np.ndarray
    identities: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    roles: np.ndarray
    bundle_version: str

    def __len__(self) -> int:
        return len(self.chips)

    def subset(self, mask) -> ChipSet:
        """The chips where ``mask`` holds."""
        mask = np.asarray(mask)
        return ChipSet(
            self.chips[mask],
            self.identities[mask],
            self.sources[mask],
            self.paths[mask],
            self.roles[mask],
            self.bundle_version,
        )

    def role(self, name: str) -> ChipSet:
        """The chips of one role: train, validation or test."""
        return self.subset(self.roles == name)

    def save(self, path: Path) -> None:
        """Write the chips to ``path``, whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            chips=self.chips,
            identities=self.identities,
            sources=self.sources,
            paths=self.paths,
            roles=self.roles,
            bundle_version=np.array(self.bundle_version),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ChipSet:
        """Chips saved by ``save``."""
        with np.load(path) as z:
            return cls(z["chips"], z["identities"], z["sources"], z["paths"], z["roles"], str(z["bundle_version"]))


def _cache_key(samples: Sequence[Sample], manifest: Manifest, part: int, size: int, fractions) -> str:
    digest = hashlib.sha256(
        json.dumps([manifest.version, manifest.parts[part]["alignment_template"], size, list(fractions)]).encode()
    )
    for s in samples:
        stat = s.path.stat()
        digest.update(f"{s.path}|{s.identity}|{s.source}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def prepare_chips(
    samples: Sequence[Sample],
    bundle_dir: Path,
    size: int,
    cache_dir: Path,
    validation_fraction: float = 0.15,
    evaluation_fraction: float = 0.4,
    log=print,
    part: int = 0,
) -> ChipSet:
    """Detect the largest face of each photo with the serving engine and align it to a
    ``size`` chip (the template of the bundle's ``part``, scaled); cached under ``cache_dir``."""
    from gpu_endpoint.engine import FaceEngine

    manifest = Manifest.load(bundle_dir)
    key = _cache_key(samples, manifest, part, size, (validation_fraction, evaluation_fraction))
    cached = Path(cache_dir) / f"chips-{key}.npz"
    if cached.exists():
        log(f"face chips from cache: {cached}")
        return ChipSet.load(cached)

    roles = sample_roles(samples, validation_fraction, evaluation_fraction)
    engine = FaceEngine(bundle_dir)
    base = engine.parts[part]  # the part fine-tuning starts from
    template = base.template * (size / base.size)
    from gpu_endpoint.align import warp_chip

    chips, kept, missed = [], [], 0
    started = time.time()
    faces = largest_faces(engine, [s.path for s in samples], log=log)
    for sample, face in zip(samples, faces, strict=True):
        image = decode(sample.path) if face else None
        if image is None:
            missed += 1
            continue
        chips.append(warp_chip(image, face.landmarks, template, size))
        kept.append(sample)
    if not kept:
        raise ValueError("no face was found in any photo of the data set")
    chip_set = ChipSet(
        np.stack(chips),
        np.array([s.identity for s in kept]),
        np.array([s.source for s in kept]),
        np.array([str(s.path) for s in kept]),
        np.array([roles[s.identity] for s in kept]),
        manifest.version,
    )
    chip_set.save(cached)
    log(f"{len(kept)} chips ({missed} photos without a face) in {time.time() - started:.0f}s → {cached}")
    return chip_set
