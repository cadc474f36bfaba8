"""The labelled face photos in ``../shared/facedata`` (read in place, never copied)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chalicelib.shared.boxes import box_iou as iou

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "facedata"  # ../shared beside the checkout
DETECTIONS_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "detections"


# The second fold of a two-fold cross-validation over identities: with FACEDATA_SPLIT=swapped the
# calibration and held-out identities trade places everywhere (bundle, training, benchmarks), so the
# whole pipeline can be rebuilt and judged on the identities the served bundle was fitted on
# (``benchmarks.cross_validated``). A bundle built so says so in its version; it is never the default.
SPLIT_ENV = "FACEDATA_SPLIT"
SWAPPED = "swapped"


def split_swapped() -> bool:
    """Whether the calibration and held-out identities trade places (cross-validation's second fold)."""
    mode = os.environ.get(SPLIT_ENV, "")
    if mode not in ("", SWAPPED):
        raise ValueError(f"{SPLIT_ENV} is '{SWAPPED}' or unset, not {mode!r}")
    return mode == SWAPPED


def identity_split(identity: str, swapped: bool | None = None) -> str:
    """Identities are split in two halves by a stable hash: "calibration" and "holdout" (the other
    way round when ``swapped``; by default as ``FACEDATA_SPLIT`` says)."""
    swapped = split_swapped() if swapped is None else swapped
    digest = hashlib.sha1(identity.encode()).digest()
    return "calibration" if (digest[0] % 2 == 0) != swapped else "holdout"


def facedata_root() -> Path | None:
    """The labelled face photos' folder, if it is there."""
    root = Path(os.environ.get("FACEDATA_DIR", DEFAULT_ROOT))
    return root if (root / "manifest.tsv").exists() else None


@dataclass(frozen=True)
class LabelledPhoto:
    """One labelled face photo."""

    path: Path
    source: str
    identity: str  # normalised: the same person under two sources is one identity

    @property
    def split(self) -> str:
        """Which side of the identity split the photo's person is on."""
        return identity_split(self.identity)


def normalise_identity(source: str, name: str) -> str:
    """One name per person across sources."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    # CelebA identities are numbers: keep them apart from other sources' names.
    return f"celeba:{key}" if source == "celeba" else key


def labelled_photos(root: Path, kind: str = "single") -> list[LabelledPhoto]:
    """The labelled photos of one kind (``single``: one face each)."""
    with open(root / "manifest.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        LabelledPhoto(root / r["path"], r["source"], normalise_identity(r["source"], r["identity"]))
        for r in rows
        if r["kind"] == kind and r["identity"]
    ]


def group_photos(root: Path) -> list[Path]:
    """The group photos (several faces each)."""
    with open(root / "manifest.tsv", newline="") as handle:
        return [root / r["path"] for r in csv.DictReader(handle, delimiter="\t") if r["kind"] == "group"]


def ground_truth_boxes(root: Path) -> dict:
    """dlib's hand-labelled face boxes for its group photos: {path: [[x, y, w, h], ...]}."""
    import xml.etree.ElementTree as ET

    boxes: dict[Path, list[list[float]]] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(root / "groups" / "dlib" / name).getroot().iter("image"):
            path = root / "groups" / "dlib" / image.attrib["file"]
            boxes.setdefault(path, []).extend(
                [float(b.attrib[side]) for side in ("left", "top", "width", "height")] for b in image.iter("box")
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
    cannot be decoded or shows no face."""
    image = decode(path)
    if image is None:
        return None
    faces = engine.detect(image, min_face_size=20, max_faces=1)
    return (image, faces[0]) if faces else None


def decode(path: Path):
    """The photo as the product decodes it, or None where it cannot be decoded."""
    from chalicelib.shared.images import ImageError, decode_image

    try:
        return decode_image(path.read_bytes()).image
    except ImageError:
        return None


def _detector_key(engine, paths: Sequence[Path]) -> str:
    """Changes with the detector's graphs and settings, the code that runs them, and the photos."""
    from gpu_endpoint import detector
    from gpu_endpoint import engine as engine_module

    files = engine.manifest.files
    digest = hashlib.sha256(json.dumps([files[n]["sha256"] for n in ("pnet", "rnet", "onet")]).encode())
    digest.update(json.dumps(engine.manifest.detector, sort_keys=True).encode())
    for module in (detector, engine_module):
        digest.update(Path(str(module.__file__)).read_bytes())
    for path in paths:  # resolved: ../shared may be reached through a link, or not
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def largest_faces(engine, paths: Sequence[Path], cache_dir: Path = DETECTIONS_CACHE, log=print) -> list:
    """``largest_face``'s face (or None) for each photo, detected once and cached: the bundle builder
    and training read the same photos with the same detector, and detection is most of their time."""
    from gpu_endpoint.engine import Face

    paths = [Path(p) for p in paths]
    cached = Path(cache_dir) / f"largest-{_detector_key(engine, paths)}.npz"
    if cached.exists():
        with np.load(cached) as z:
            found, boxes, scores, landmarks = z["found"], z["boxes"], z["scores"], z["landmarks"]
        log(f"detections from cache: {cached}")
    else:
        found = np.zeros(len(paths), bool)
        boxes, scores, landmarks = np.zeros((len(paths), 4)), np.zeros(len(paths)), np.zeros((len(paths), 5, 2))
        started = time.time()
        for i, path in enumerate(paths):
            hit = largest_face(engine, path)
            if hit is not None:
                face = hit[1]
                found[i], boxes[i], scores[i], landmarks[i] = True, face.box, face.score, face.landmarks
            if (i + 1) % 200 == 0:
                log(f"  detected {i + 1}/{len(paths)} photos ({time.time() - started:.0f}s)")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, found=found, boxes=boxes, scores=scores, landmarks=landmarks)
        tmp.replace(cached)
    return [
        Face(boxes[i].tolist(), float(scores[i]), landmarks[i].tolist()) if found[i] else None
        for i in range(len(paths))
    ]
