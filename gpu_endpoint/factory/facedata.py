"""The labelled face photos in ``../shared/facedata`` (read in place, never copied)."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from chalicelib.boxes import box_iou as iou

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "facedata"  # ../shared beside the checkout


def facedata_root() -> Path | None:
    root = Path(os.environ.get("FACEDATA_DIR", DEFAULT_ROOT))
    return root if (root / "manifest.tsv").exists() else None


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    source: str
    identity: str  # normalised: the same person under two sources is one identity

    @property
    def split(self) -> str:
        """Identities are split in two halves by a stable hash: calibration and holdout."""
        digest = hashlib.sha1(self.identity.encode()).digest()
        return "calibration" if digest[0] % 2 == 0 else "holdout"


def normalise_identity(source: str, name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    # CelebA identities are numbers: keep them apart from other sources' names.
    return f"celeba:{key}" if source == "celeba" else key


def labelled_photos(root: Path, kind: str = "single") -> list[LabelledPhoto]:
    with open(root / "manifest.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        LabelledPhoto(root / r["path"], r["source"], normalise_identity(r["source"], r["identity"]))
        for r in rows
        if r["kind"] == kind and r["identity"]
    ]


def group_photos(root: Path) -> list[Path]:
    with open(root / "manifest.tsv", newline="") as handle:
        return [root / r["path"] for r in csv.DictReader(handle, delimiter="\t") if r["kind"] == "group"]


def ground_truth_boxes(root: Path) -> dict:
    """dlib's hand-labelled face boxes for its group photos: {path: [[x, y, w, h], ...]}."""
    import xml.etree.ElementTree as ET

    boxes = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(root / "groups" / "dlib" / name).getroot().iter("image"):
            path = root / "groups" / "dlib" / image.get("file")
            boxes.setdefault(path, []).extend(
                [float(b.get("left")), float(b.get("top")), float(b.get("width")), float(b.get("height"))]
                for b in image.iter("box")
            )
    return boxes


def match_detections(truth, found, min_iou: float = 0.3):
    """Greedy one-to-one matching by IoU: (true positives, misses, false positives)."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f = set(), set()
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t), len(truth) - len(used_t), len(found) - len(used_f)


def largest_face(engine, path: Path):
    """(the decoded photo, its largest face) as the serving engine finds it, or None when the file
    cannot be decoded or shows no face: how the bundle builder and training read labelled photos."""
    from chalicelib.images import ImageError, decode_image

    try:
        image = decode_image(path.read_bytes()).image
    except ImageError:
        return None
    faces = engine.detect(image, min_face_size=20, max_faces=1)
    return (image, faces[0]) if faces else None
