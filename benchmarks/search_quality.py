"""Search quality on real faces: every photo of an identity with ≥ 3 photos is used as the key
over an album of all labelled photos (plus the group photos as distractors).

    .venv/bin/python -m benchmarks.search_quality   → benchmarks/results/search_quality.json

Per key: precision, recall and F1 at the bundle's calibrated threshold, and average precision
over the ranked album; reported overall, per identity split, and for the kpop (East-Asian) slice.
Group photos are unlabelled: hits on them are counted apart, not as errors.
"""
from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from chalicelib.images import ImageError, decode_image
from benchmarks.common import cpu_engine, write_results
from gpu_endpoint.facedata import group_photos, labelled_photos



def average_precision(relevant: np.ndarray) -> float:
    """AP of a ranked list given as booleans (all relevant items are in the list)."""
    hits = np.cumsum(relevant)
    return float((hits[relevant] / (np.nonzero(relevant)[0] + 1)).mean()) if relevant.any() else 0.0


def summarise(rows) -> dict:
    if not rows:
        return {}
    keys = ("precision", "recall", "f1", "ap")
    return dict({k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}, keys=len(rows),
                map=round(float(np.mean([r["ap"] for r in rows])), 4))


def main() -> int:
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    threshold = engine.threshold
    photos, vectors = [], []
    for photo in labelled_photos(root):
        try:
            faces = engine.analyze([decode_image(photo.path.read_bytes()).image], max_faces=1)[0]
        except ImageError:
            continue
        if faces:
            photos.append(photo)
            vectors.append(faces[0].embedding)
    distractors = []
    for path in group_photos(root):
        try:
            for face in engine.analyze([decode_image(path.read_bytes()).image])[0]:
                distractors.append((path.name, face.embedding))
        except ImageError:
            continue
    album = np.array(vectors, np.float32)
    group_matrix = np.array([v for _, v in distractors], np.float32)
    identities = np.array([p.identity for p in photos])
    counts = Counter(identities)
    rows = []
    for i, photo in enumerate(photos):
        if counts[photo.identity] < 3:
            continue
        sims = album @ album[i]
        sims[i] = -np.inf                      # the key itself is not a result
        relevant = identities == photo.identity
        relevant[i] = False
        retrieved = sims >= threshold
        tp = int((retrieved & relevant).sum())
        precision = tp / retrieved.sum() if retrieved.sum() else 1.0
        recall = tp / relevant.sum()
        order = np.argsort(-sims)[:-1]
        group_hits = int((group_matrix @ album[i] >= threshold).sum()) if len(group_matrix) else 0
        rows.append({"source": photo.source, "split": photo.split, "precision": precision, "recall": recall,
                     "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                     "ap": average_precision(relevant[order]), "group_face_hits": group_hits})
    results = {
        "bundle": engine.version, "threshold": threshold, "album_photos": len(photos),
        "distractor_faces": len(distractors),
        "all": summarise(rows),
        "calibration_identities": summarise([r for r in rows if r["split"] == "calibration"]),
        "holdout_identities": summarise([r for r in rows if r["split"] == "holdout"]),
        "kpop": summarise([r for r in rows if r["source"] == "kpop"]),
        "without_kpop": summarise([r for r in rows if r["source"] != "kpop"]),
        "mean_group_face_hits_per_key": round(float(np.mean([r["group_face_hits"] for r in rows])), 3),
    }
    write_results("search_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
