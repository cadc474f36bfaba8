"""Search quality on real faces, as the product searches: one album with every labelled photo of
every source mixed (plus the faces of the group photos as unlabelled distractors), each photo of an
identity with ≥ 3 photos as the key (its largest face), one threshold.

    .venv/bin/python -m benchmarks.search_quality   → benchmarks/results/search_quality.json

Levers, each a column:
- ``raw``: cosine at the served bundle's search threshold (what search does today);
- ``as_norm``: cohort score normalisation (``chalicelib.score_norm``) with the cohort built from the
  calibration identities of every source, its ``top_n`` and threshold fitted on the calibration
  identities only;
- ``as_norm_western_cohort``: the same with a cohort without East-Asian faces, to show what the
  cohort's make-up does.
Nothing fitted sees a held-out identity: held-out faces are never in a cohort, and every threshold
and ``top_n`` is chosen by mean F1 over calibration keys searching a calibration-only album (where a
face's cohort statistics leave out its own person). Slices: held-out East-Asian first (kpop,
asian_faces, casia_v5), then the rest.
"""
from __future__ import annotations

import sys

import numpy as np

from benchmarks.common import cpu_engine, write_results
from chalicelib.images import ImageError, decode_image
from chalicelib.score_norm import as_norm, cohort_stats
from gpu_endpoint.facedata import group_photos, labelled_photos

EAST_ASIAN = ("kpop", "asian_faces", "casia_v5")
TOP_N_CHOICES = (20, 50, 100)


def average_precision(relevant: np.ndarray) -> float:
    """AP of a ranked list given as booleans (all relevant items are in the list)."""
    hits = np.cumsum(relevant)
    return float((hits[relevant] / (np.nonzero(relevant)[0] + 1)).mean()) if relevant.any() else 0.0


def search_rows(scores: np.ndarray, group_scores: np.ndarray, labels: np.ndarray, keys, threshold: float) -> list:
    """Per key: precision, recall, F1, AP; ``scores`` is keys × album (the key itself included)."""
    rows = []
    for k, i in enumerate(keys):
        s = scores[k].copy()
        s[i] = -np.inf                      # the key itself is not a result
        relevant = labels == labels[i]
        relevant[i] = False
        retrieved = s >= threshold
        tp = int((retrieved & relevant).sum())
        precision = tp / retrieved.sum() if retrieved.sum() else 1.0
        recall = tp / relevant.sum()
        rows.append({"precision": precision, "recall": recall,
                     "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                     "ap": average_precision(relevant[np.argsort(-s)[:-1]]),
                     "group_face_hits": int((group_scores[k] >= threshold).sum())})
    return rows


def summarise(rows) -> dict:
    if not rows:
        return {}
    out = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("precision", "recall", "f1")}
    out.update(map=round(float(np.mean([r["ap"] for r in rows])), 4), keys=len(rows),
               group_face_hits_per_key=round(float(np.mean([r["group_face_hits"] for r in rows])), 3))
    return out


class Album:
    """The embedded album and everything the levers need about it."""

    def __init__(self, vectors, groups, sources, identities, splits):
        self.vectors, self.groups = vectors, groups
        self.sources, self.identities, self.splits = sources, identities, splits
        self.calibration = splits == "calibration"
        self.east_asian = np.isin(sources, EAST_ASIAN)
        counts = {i: c for i, c in zip(*np.unique(identities, return_counts=True))}
        self.is_key = np.array([counts[i] >= 3 for i in identities])

    def raw(self, keys, columns=None):
        columns = np.arange(len(self.vectors)) if columns is None else columns
        return self.vectors[keys] @ self.vectors[columns].T, self.vectors[keys] @ self.groups.T

    def normalised(self, keys, cohort_mask, top_n, columns=None):
        """AS-norm scores; a face whose person is in the cohort never meets that person there."""
        columns = np.arange(len(self.vectors)) if columns is None else columns
        cohort, cohort_ids = self.vectors[cohort_mask], self.identities[cohort_mask]
        mean, std = cohort_stats(self.vectors, cohort, top_n, self.identities[:, None] == cohort_ids[None, :])
        g_mean, g_std = cohort_stats(self.groups, cohort, top_n)
        raw, group_raw = self.raw(keys, columns)
        scores = np.vstack([as_norm(raw[k], mean[i], std[i], mean[columns], std[columns]) for k, i in enumerate(keys)])
        groups = np.vstack([as_norm(group_raw[k], mean[i], std[i], g_mean, g_std) for k, i in enumerate(keys)])
        return scores, groups


def fit(album: Album, score_fn, grid) -> tuple:
    """The threshold with the best mean F1 of calibration keys over a calibration-only album."""
    columns = np.nonzero(album.calibration)[0]
    keys = np.nonzero(album.calibration & album.is_key)[0]
    scores, groups = score_fn(keys, columns)
    local = {int(c): n for n, c in enumerate(columns)}
    labels = album.identities[columns]
    best = max(((float(np.mean([r["f1"] for r in search_rows(scores, groups, labels,
                                                                [local[int(k)] for k in keys], t)])), t)
                for t in grid))
    return best[1], best[0]


def report(album: Album, scores, groups, threshold) -> dict:
    keys = np.nonzero(album.is_key)[0]
    rows = search_rows(scores, groups, album.identities, keys, threshold)
    slices = {
        "holdout_east_asian": album.east_asian & ~album.calibration,
        **{f"holdout_{s}": (album.sources == s) & ~album.calibration for s in EAST_ASIAN},
        "holdout_rest": ~album.east_asian & ~album.calibration,
        "holdout_all": ~album.calibration,
        "calibration_east_asian": album.east_asian & album.calibration,
        "calibration_all": album.calibration,
    }
    return dict({"threshold": round(float(threshold), 4)},
                **{name: summarise([r for r, k in zip(rows, keys) if mask[k]]) for name, mask in slices.items()})


def embed(engine, root) -> Album:
    photos, vectors = [], []
    for photo in labelled_photos(root):
        try:
            faces = engine.analyze([decode_image(photo.path.read_bytes()).image], max_faces=1)[0]
        except ImageError:
            continue
        if faces:
            photos.append(photo)
            vectors.append(faces[0].embedding)
    groups = []
    for path in group_photos(root):
        try:
            groups += [face.embedding for face in engine.analyze([decode_image(path.read_bytes()).image])[0]]
        except ImageError:
            continue
    return Album(np.array(vectors, np.float32), np.array(groups, np.float32),
                 np.array([p.source for p in photos]), np.array([p.identity for p in photos]),
                 np.array([p.split for p in photos]))


def main() -> int:
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    album = embed(engine, root)
    keys = np.nonzero(album.is_key)[0]
    results = {"bundle": engine.version, "album_photos": len(album.vectors), "distractor_faces": len(album.groups),
               "east_asian_identities": {"calibration": len(set(album.identities[album.east_asian & album.calibration])),
                                         "holdout": len(set(album.identities[album.east_asian & ~album.calibration]))},
               "levers": {}}
    results["levers"]["raw"] = report(album, *album.raw(keys), engine.threshold)
    cohorts = {"as_norm": album.calibration, "as_norm_western_cohort": album.calibration & ~album.east_asian}
    for name, cohort in cohorts.items():
        fitted = {n: fit(album, lambda k, c, n=n: album.normalised(k, cohort, n, c), np.linspace(0.5, 6, 56))
                  for n in TOP_N_CHOICES}
        top_n = max(fitted, key=lambda n: fitted[n][1])
        threshold = fitted[top_n][0]
        results["levers"][name] = dict(report(album, *album.normalised(keys, cohort, top_n), threshold),
                                       top_n=top_n, cohort_faces=int(cohort.sum()),
                                       cohort_identities=len(set(album.identities[cohort])),
                                       calibration_f1_by_top_n={n: round(f, 4) for n, (_, f) in fitted.items()})
    write_results("search_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
