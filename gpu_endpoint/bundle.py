"""The model bundle's format, owned here: where a bundle lives, its manifest, its files and digests.

A bundle is a folder: ``manifest.json`` plus the ONNX graphs and the cohort it names. The bundle
factory (``build_bundle``) and training's export write it (``Manifest.create``, then
``Manifest.extended``), the engine and the deploy script read it; all of them go through
:class:`Manifest`, whose document is typed below, section by section.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

FORMAT = "memory-studio-face-bundle/2"  # /2: the embedder is a list of fused parts
MANIFEST = "manifest.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "bundle"


class BundleError(ValueError):
    """A folder that is not a bundle this code can serve."""


def sha256(path: Path) -> str:
    """A file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileEntry(TypedDict, total=False):
    """One file of the bundle, as the manifest lists it."""

    path: str  # relative to the bundle folder
    sha256: str  # written by ``Manifest.save``


class Detector(TypedDict):
    """MTCNN: the engine runs its stages with these thresholds and this pyramid factor."""

    name: str
    thresholds: list[float]  # P-, R- and O-net face probability
    pyramid_factor: float  # each pyramid level's scale against the one before
    input: str
    provenance: str
    licence: str


class Part(TypedDict, total=False):
    """One embedder of the fusion: its graph (``file``), chip and share of the fused vector."""

    name: str
    file: str
    weight: float
    input_size: int
    input: str
    normalisation: dict[str, Any]
    alignment_template: list[list[float]]
    embedding_dim: int
    output: str
    provenance: str
    licence: str
    test_time_flip: bool
    reference_mean: list[float]
    anchor: float
    training: dict[str, Any] | None


class Embedder(TypedDict, total=False):
    """The embedder section: what the served vectors are."""

    name: str
    embedding_dim: int
    metric: str
    output: str
    parts: list[Part]


class Document(TypedDict, total=False):
    """``manifest.json``. The fitted sections (calibration onwards) carry their reports as written."""

    format: str
    version: str
    build_key: str  # the builder's cache key: what the bundle was built from
    builder: str
    detector: Detector
    embedder: Embedder
    files: dict[str, FileEntry]
    calibration: dict[str, Any]
    facedata_split: str  # present when fitted on the swapped split
    score_normalisation: dict[str, Any]
    grouping: dict[str, Any]
    sources: dict[str, Any]
    training: dict[str, Any]


@dataclass
class Manifest:
    """The manifest document with typed access to what code needs of it."""

    document: Document

    @classmethod
    def create(
        cls,
        *,
        version: str,
        builder: str,
        detector: Detector,
        embedder: Embedder,
        files: dict[str, FileEntry],
        build_key: str | None = None,
    ) -> Manifest:
        """A servable manifest of this format: what the engine needs to load the bundle."""
        document: Document = {"format": FORMAT, "version": version}
        if build_key is not None:
            document["build_key"] = build_key
        document["builder"], document["detector"] = builder, detector
        document["embedder"], document["files"] = embedder, files
        return cls(document)

    def extended(self, sections: Document) -> Manifest:
        """This manifest with ``sections`` added or replaced (the fitted sections after a calibration)."""
        return Manifest({**self.document, **sections})

    @classmethod
    def load(cls, bundle_dir: Path) -> Manifest:
        """The manifest of the bundle in ``bundle_dir`` (BundleError when there is none, or it is not
        one this code serves)."""
        path = Path(bundle_dir) / MANIFEST
        if not path.exists():
            raise BundleError(f"{bundle_dir} holds no {MANIFEST}: not a face model bundle")
        manifest = cls(json.loads(path.read_text()))
        if manifest.document.get("format") != FORMAT:
            raise BundleError(
                f"{bundle_dir}: bundle format {manifest.document.get('format')!r}, this code serves "
                f"{FORMAT!r}; rebuild it (python -m model_factory.build_bundle)"
            )
        return manifest

    @staticmethod
    def exists(bundle_dir: Path) -> bool:
        """Whether ``bundle_dir`` holds a manifest."""
        return (Path(bundle_dir) / MANIFEST).exists()

    def save(self, bundle_dir: Path) -> None:
        """Write the manifest, each file entry with the SHA-256 of the file as it is now."""
        for entry in self.files.values():
            entry["sha256"] = sha256(Path(bundle_dir) / entry["path"])
        (Path(bundle_dir) / MANIFEST).write_text(json.dumps(self.document, indent=2))

    @property
    def version(self) -> str:
        """The bundle's version, which names it everywhere (face records, caches, deploys)."""
        return self.document["version"]

    @property
    def build_key(self) -> str | None:
        """What the bundle was built from, hashed (None for a bundle not built by the factory)."""
        return self.document.get("build_key")

    @property
    def files(self) -> dict[str, FileEntry]:
        """The bundle's files by name."""
        return self.document["files"]

    @property
    def detector(self) -> Detector:
        """The detector's settings: its stages' thresholds and the pyramid factor."""
        return self.document["detector"]

    @property
    def calibration(self) -> dict[str, Any]:
        """The thresholds and the reports they were fitted with."""
        return self.document["calibration"]

    @property
    def facedata_split(self) -> str | None:
        """The labelled split the bundle was fitted on when it is not the served one (``facedata.SWAPPED``)."""
        return self.document.get("facedata_split")

    @property
    def fitted_on_swapped_split(self) -> bool:
        """Fitted on the served bundle's held-out identities: never served."""
        return self.facedata_split is not None

    @property
    def training(self) -> dict[str, Any] | None:
        """How a fine-tuned bundle was trained (training's export), if it was."""
        return self.document.get("training")

    def path(self, bundle_dir: Path, name: str) -> Path:
        """Where the file named ``name`` is in ``bundle_dir``."""
        return Path(bundle_dir) / self.files[name]["path"]

    @property
    def parts(self) -> list[Part]:
        """The embedder's parts, in the order their vectors are concatenated."""
        return self.document["embedder"]["parts"]

    @property
    def embedding_dim(self) -> int:
        """The length of a served vector."""
        return self.document["embedder"]["embedding_dim"]

    @property
    def search_threshold(self) -> float:
        """The cosine above which a face counts as the same person in album search."""
        calibration = self.document["calibration"]
        return calibration.get("search_threshold", calibration["threshold"])

    @property
    def grouping(self) -> dict[str, Any] | None:
        """People grouping parameters fitted on the calibration identities (``chalicelib.grouping``)."""
        fitted = self.grouping_report
        return {k: fitted[k] for k in ("linkage", "k", "min_faces", "threshold")} if fitted else None

    @property
    def grouping_report(self) -> dict[str, Any] | None:
        """The whole ``grouping`` section: the parameters and the fit's reports."""
        return self.document.get("grouping")

    @property
    def normalisation(self) -> dict[str, Any] | None:
        """Cohort score normalisation (``chalicelib.shared.score_norm``), when the bundle carries a cohort."""
        return self.document.get("score_normalisation")
