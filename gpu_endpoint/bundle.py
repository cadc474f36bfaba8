"""The model bundle's format, owned here: where a bundle lives, its manifest, its files and digests.

A bundle is a folder: ``manifest.json`` plus the ONNX graphs and the cohort it names. The bundle
factory (``build_bundle``) and training's export write it, the engine and the deploy script read
it; all of them go through :class:`Manifest`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "memory-studio-face-bundle/2"  # /2: the embedder is a list of fused parts
MANIFEST = "manifest.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "bundle"


class BundleError(ValueError):
    """A folder that is not a bundle this code can serve."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """The manifest document with typed access to what code needs of it."""

    document: dict[str, Any]

    @classmethod
    def load(cls, bundle_dir: Path) -> Manifest:
        path = Path(bundle_dir) / MANIFEST
        if not path.exists():
            raise BundleError(f"{bundle_dir} holds no {MANIFEST}: not a face model bundle")
        manifest = cls(json.loads(path.read_text()))
        if manifest.document.get("format") != FORMAT:
            raise BundleError(
                f"{bundle_dir}: bundle format {manifest.document.get('format')!r}, this code serves "
                f"{FORMAT!r}; rebuild it (python -m gpu_endpoint.factory.build_bundle)"
            )
        return manifest

    @staticmethod
    def exists(bundle_dir: Path) -> bool:
        return (Path(bundle_dir) / MANIFEST).exists()

    def save(self, bundle_dir: Path) -> None:
        """Write the manifest, each file entry with the SHA-256 of the file as it is now."""
        for entry in self.files.values():
            entry["sha256"] = sha256(Path(bundle_dir) / entry["path"])
        (Path(bundle_dir) / MANIFEST).write_text(json.dumps(self.document, indent=2))

    @property
    def version(self) -> str:
        return self.document["version"]

    @property
    def build_key(self) -> str | None:
        return self.document.get("build_key")

    @property
    def files(self) -> dict[str, dict[str, str]]:
        return self.document["files"]

    def path(self, bundle_dir: Path, name: str) -> Path:
        return Path(bundle_dir) / self.files[name]["path"]

    @property
    def parts(self) -> list[dict[str, Any]]:
        """The embedder's parts, in the order their vectors are concatenated."""
        return self.document["embedder"]["parts"]

    @property
    def embedding_dim(self) -> int:
        return self.document["embedder"]["embedding_dim"]

    @property
    def search_threshold(self) -> float:
        """The cosine above which a face counts as the same person in album search."""
        calibration = self.document["calibration"]
        return calibration.get("search_threshold", calibration["threshold"])

    @property
    def grouping(self) -> dict[str, Any] | None:
        """People grouping parameters fitted on the calibration identities (``chalicelib.grouping``)."""
        fitted = self.document.get("grouping")
        return {k: fitted[k] for k in ("linkage", "k", "min_faces", "threshold")} if fitted else None

    @property
    def normalisation(self) -> dict[str, Any] | None:
        """Cohort score normalisation (``chalicelib.shared.score_norm``), when the bundle carries a cohort."""
        return self.document.get("score_normalisation")
