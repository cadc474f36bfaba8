"""Search quality on real faces, as the product searches: one album with every labelled photo of
every source mixed (plus the faces of the group photos as unlabelled distractors), each photo of an
identity with ≥ 3 photos as the key (its largest face), the bundle's own decision rule.

    .venv/bin/python -m benchmarks.search_quality   → benchmarks/results/search_quality.json
    .venv/bin/python -m benchmarks.search_quality --bundle DIR   → search_quality_<bundle version>.json

The embedded album is cached in ``.cache/benchmarks/`` per set of model files (``--fresh`` re-embeds).

Levers, each a column:
- ``<part>_raw`` / ``<part>_normalised``: one embedder of the bundle alone (``dlib`` is the previous
  default), by raw cosine or with cohort normalisation, each fitted here on the calibration
  identities exactly as the bundle builder fits the served embedding;
- ``raw``: the served (fused) embedding by cosine at the bundle's raw search threshold;
- ``normalised``: the bundle's cohort score normalisation (``chalicelib.shared.score_norm``): cosine ≥ its raw
  floor and normalised score ≥ its threshold, ranked by the normalised score, with the statistics
  the endpoint computes against the bundle's cohort;
- ``served``: what search does: ``normalised`` plus the bundle's query expansion
  (``chalicelib.shared.score_norm.QueryExpansion``), when it has one.
The cohort, ``top_n``, floors and thresholds are all fitted on the calibration identities only
(``model_factory.calibration``); held-out faces are never in a cohort. Slices: held-out East-Asian
first (kpop, asian_faces, casia_v5), then the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_engine, write_results
from chalicelib.grouping import GroupingParams, agglomerate, knn_edges, normalised_pair_scores
from chalicelib.shared.images import ImageError, decode_image
from chalicelib.shared.score_norm import QueryExpansion, as_norm, cohort_stats
from model_factory import calibration
from model_factory.build_bundle import COHORT_SOURCES
from model_factory.facedata import group_photos, labelled_photos

EAST_ASIAN = ("kpop", "asian_faces", "casia_v5")
CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "benchmarks"


def average_precision(relevant: np.ndarray) -> float:
    """AP of a ranked list given as booleans (all relevant items are in the list)."""
    hits = np.cumsum(relevant)
    return float((hits[relevant] / (np.nonzero(relevant)[0] + 1)).mean()) if relevant.any() else 0.0


def search_rows(scores, group_scores, labels: np.ndarray, keys, threshold: float, passing=None) -> list:
    """Per key: precision, recall, F1, AP; ``scores`` is keys × album (the key itself included),
    the ranking. A face is retrieved when its score ≥ ``threshold``, or where ``passing`` (album,
    distractors: keys × faces each) says so: query expansion lets faces through that no single
    threshold on the ranking scores would."""
    passing = passing or (scores >= threshold, group_scores >= threshold)
    rows = []
    for k, i in enumerate(keys):
        s = scores[k].copy()
        s[i] = -np.inf  # the key itself is not a result
        relevant = labels == labels[i]
        relevant[i] = False
        retrieved = passing[0][k].copy()
        retrieved[i] = False
        tp = int((retrieved & relevant).sum())
        precision = tp / retrieved.sum() if retrieved.sum() else 1.0
        recall = tp / relevant.sum()
        rows.append(
            {
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                "ap": average_precision(relevant[np.argsort(-s)[:-1]]),
                "group_face_hits": int(passing[1][k].sum()),
                "identity": labels[i],
            }
        )
    return rows


def summarise(rows) -> dict:
    if not rows:
        return {}
    metrics = ("precision", "recall", "f1")
    out = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in metrics}
    identities = [r["identity"] for r in rows]
    out.update({f"{k}_interval": calibration.identity_interval([r[k] for r in rows], identities) for k in metrics})
    out.update(
        map=round(float(np.mean([r["ap"] for r in rows])), 4),
        keys=len(rows),
        identities=len(set(identities)),
        group_face_hits_per_key=round(float(np.mean([r["group_face_hits"] for r in rows])), 3),
    )
    return out


class Album:
    """The embedded album and everything the levers need about it."""

    def __init__(self, vectors, groups, sources, identities, splits, stats=None, group_stats=None, group_photo=None):
        self.vectors, self.groups = vectors, groups
        self.group_photo = group_photo  # per distractor face: the index of its group photo
        self.stats, self.group_stats = stats, group_stats  # (n, 2) cohort mean and std, from the endpoint
        self.sources, self.identities, self.splits = sources, identities, splits
        self.calibration = splits == "calibration"
        self.east_asian = np.isin(sources, EAST_ASIAN)
        counts = {i: c for i, c in zip(*np.unique(identities, return_counts=True))}
        self.is_key = np.array([counts[i] >= 3 for i in identities])

    def raw(self, keys, columns=None):
        columns = np.arange(len(self.vectors)) if columns is None else columns
        return self.vectors[keys] @ self.vectors[columns].T, self.vectors[keys] @ self.groups.T

    def served(self, keys, raw_floor: float):
        """Normalised scores, -inf below the raw floor (a result must pass both)."""
        raw, group_raw = self.raw(keys)
        scores, groups = [], []
        for k, i in enumerate(keys):
            key_mean, key_std = self.stats[i]
            scores.append(
                np.where(
                    raw[k] >= raw_floor, as_norm(raw[k], key_mean, key_std, self.stats[:, 0], self.stats[:, 1]), -np.inf
                )
            )
            groups.append(
                np.where(
                    group_raw[k] >= raw_floor,
                    as_norm(group_raw[k], key_mean, key_std, self.group_stats[:, 0], self.group_stats[:, 1]),
                    -np.inf,
                )
            )
        return np.vstack(scores), np.vstack(groups)


def expanded(album: Album, keys, norm: dict):
    """What search does with the bundle's query expansion over ``served``'s scores: the album's
    faces and the distractors are one album, as they are in the product. Returns the ranking
    scores of both and the verdicts (``search_rows``'s ``passing``)."""
    expansion = QueryExpansion.from_settings(norm["expansion"])
    scores, groups = album.served(keys, norm["raw_floor"])
    raw, group_raw = album.raw(keys)
    vectors = np.vstack([album.vectors, album.groups])
    mean, std = np.vstack([album.stats, album.group_stats]).T
    n = len(album.vectors)
    ranked, passing = [], []
    for k, i in enumerate(keys):
        sims = np.concatenate([raw[k], group_raw[k]])
        sims[i] = -1.0  # the key is not in the album it searches
        s = np.concatenate([scores[k], groups[k]])
        s[i] = -np.inf
        pool = expansion.candidates(s, sims >= norm["raw_floor"])
        s, verdict = expansion.rescore(sims, s, s >= norm["threshold"], pool, vectors[pool], mean, std)
        ranked.append(s)
        passing.append(verdict)
    ranked, passing = np.vstack(ranked), np.vstack(passing)
    return ranked[:, :n], ranked[:, n:], (passing[:, :n], passing[:, n:])


def report(album: Album, scores, groups, threshold, passing=None) -> dict:
    keys = np.nonzero(album.is_key)[0]
    return _sliced(album, keys, search_rows(scores, groups, album.identities, keys, threshold, passing), threshold)


def slices(album: Album) -> dict:
    """Name → faces: held-out East-Asian first, then each East-Asian source, the rest, all."""
    return {
        "holdout_east_asian": album.east_asian & ~album.calibration,
        **{f"holdout_{s}": (album.sources == s) & ~album.calibration for s in EAST_ASIAN},
        "holdout_rest": ~album.east_asian & ~album.calibration,
        "holdout_all": ~album.calibration,
        "calibration_east_asian": album.east_asian & album.calibration,
        "calibration_all": album.calibration,
    }


def _sliced(album: Album, keys, rows, threshold) -> dict:
    return dict(
        {"threshold": round(float(threshold), 4)},
        **{name: summarise([r for r, k in zip(rows, keys) if mask[k]]) for name, mask in slices(album).items()},
    )


def normalised_levers(album: Album, norm: dict, rows: bool = False) -> dict:
    """``normalised`` and ``served`` (with the query expansion, when ``norm`` has one) for the
    album's statistics and the decisions in ``norm`` (the manifest's ``score_normalisation``).
    ``rows``: each lever's per-key rows as well (``search_rows``), under ``<lever>_rows``."""
    keys = np.nonzero(album.is_key)[0]
    out = {}
    for lever, (scores, groups, passing) in _decided(album, keys, norm):
        found = search_rows(scores, groups, album.identities, keys, norm["threshold"], passing)
        out[lever] = dict(_sliced(album, keys, found, norm["threshold"]), raw_floor=norm["raw_floor"])
        if lever == "normalised":
            out[lever].update(top_n=norm["top_n"], cohort=norm.get("cohort"))
        else:
            out[lever]["expansion"] = norm["expansion"]
        if rows:
            out[f"{lever}_rows"] = found
    if "served" not in out:
        out["served"] = out["normalised"]
        if rows:
            out["served_rows"] = out["normalised_rows"]
    return out


def _decided(album: Album, keys, norm: dict):
    yield "normalised", (*album.served(keys, norm["raw_floor"]), None)
    if norm.get("expansion"):
        yield "served", expanded(album, keys, norm)


def album_people(album: Album, grouping: GroupingParams) -> np.ndarray:
    """The album's people as regrouping finds them (``chalicelib.grouping``, the bundle's grouping
    calibration): a label per face, the album's photos then the distractors; -1 for nobody."""
    vectors = np.vstack([album.vectors, album.groups])
    stats = np.vstack([album.stats, album.group_stats])
    photos = [f"single-{i}" for i in range(len(album.vectors))] + [f"group-{p}" for p in album.group_photo.tolist()]
    edges = knn_edges(vectors, stats, grouping.k)
    return agglomerate(len(vectors), edges, photos, grouping.threshold, grouping.min_faces, grouping.linkage)


def voted_person(album: Album, labels: np.ndarray, i: int, grouping: GroupingParams) -> int:
    """The person face ``i``, as a key photo from outside the album, joins by the vote of its
    ``k`` nearest album faces (``chalicelib.people_aware.PeopleAware.vote``): those scoring ≥ the
    grouping threshold, the person with the best mean score; -1 for nobody."""
    vectors = np.vstack([album.vectors, album.groups])
    stats = np.vstack([album.stats, album.group_stats])
    scores = normalised_pair_scores(vectors[i : i + 1], stats[i : i + 1], vectors, stats)[0]
    scores[i] = -np.inf  # the key is not in the album
    near = [j for j in np.argsort(-scores)[: grouping.k] if scores[j] >= grouping.threshold and labels[j] >= 0]
    links: dict = {}
    for j in near:
        links.setdefault(int(labels[j]), []).append(scores[j])
    return max(links, key=lambda person: float(np.mean(links[person]))) if links else -1


def people_aware_levers(album: Album, norm: dict, grouping: GroupingParams) -> dict:
    """Find when the key is a person of the album (``chalicelib.people_aware``), over ``served``:
    every face of the key's person is a result, a face of another person never is; a key of
    nobody known keeps ``served``'s verdicts. ``people_aware_album_face``: the key is an album face,
    its person the one grouping gave it; ``people_aware_key_photo``: the key is a new photo of the
    person (the key's face is taken out of the album it searches and matched to a person by its
    neighbours' vote; the grouping itself is the album's, key included)."""
    keys = np.nonzero(album.is_key)[0]
    labels = album_people(album, grouping)
    scores, groups, (passing, group_passing) = expanded(album, keys, norm)
    n = len(album.vectors)
    out: dict = {}
    for lever, person_of in (
        ("people_aware_album_face", lambda i: int(labels[i])),
        ("people_aware_key_photo", lambda i: voted_person(album, labels, i, grouping)),
    ):
        verdicts = np.hstack([passing, group_passing])
        found = np.zeros(len(keys), bool)
        for k, i in enumerate(keys):
            person = person_of(i)
            if person < 0:
                continue
            found[k] = True
            verdicts[k] = (verdicts[k] & (labels < 0)) | (labels == person)
        decided = (verdicts[:, :n], verdicts[:, n:])
        rows = search_rows(scores, groups, album.identities, keys, norm["threshold"], decided)
        out[lever] = dict(
            _sliced(album, keys, rows, norm["threshold"]),
            holdout_keys_with_a_person=round(float(found[~album.calibration[keys]].mean()), 4),
            grouping=grouping.to_json(),
        )
    return out


def embed(engine, root) -> Album:
    photos, faces = [], []
    for photo in labelled_photos(root):
        try:
            found = engine.analyze([decode_image(photo.path.read_bytes()).image], max_faces=1)[0]
        except ImageError:
            continue
        if found:
            photos.append(photo)
            faces.append(found[0])
    groups, group_photo = [], []
    for number, path in enumerate(group_photos(root)):
        try:
            found = engine.analyze([decode_image(path.read_bytes()).image])[0]
        except ImageError:
            continue
        groups += found
        group_photo += [number] * len(found)
    stats = [f.cohort or (np.nan, np.nan) for f in faces]
    return Album(
        np.array([f.embedding for f in faces], np.float32),
        np.array([f.embedding for f in groups], np.float32),
        np.array([p.source for p in photos]),
        np.array([p.identity for p in photos]),
        np.array([p.split for p in photos]),
        np.array(stats, np.float64),
        np.array([f.cohort or (np.nan, np.nan) for f in groups], np.float64).reshape(-1, 2),
        np.array(group_photo, np.int64),
    )


def cached_album(engine, root, fresh: bool = False) -> Album:
    """Keyed by the bundle's model files, its embedder parts' settings (e.g. test-time flip) and its
    cohort: the same inputs embed the same vectors with the same statistics."""
    cohort = engine.normalisation and engine.normalisation["cohort"]
    inputs = [engine.manifest.files, engine.manifest.parts, cohort]
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"album-{key}.npz"
    fields = ("vectors", "groups", "sources", "identities", "splits", "stats", "group_stats", "group_photo")
    if path.exists() and not fresh:
        data = np.load(path, allow_pickle=False)
        return Album(*(data[name] for name in fields))
    album = embed(engine, root)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: getattr(album, name) for name in fields})
    return album


def part_levers(album: Album, name: str, vectors: np.ndarray, groups: np.ndarray) -> dict:
    """One embedder alone: raw and normalised search, fitted on the calibration identities."""
    part = Album(vectors, groups, album.sources, album.identities, album.splits)
    keys = np.nonzero(part.is_key)[0]
    labels = list(album.identities[album.calibration])
    threshold = calibration.best_search_threshold(vectors[album.calibration], labels)
    in_cohort = np.isin(album.sources[album.calibration], COHORT_SOURCES)
    fit = calibration.fit_normalised_search(vectors[album.calibration], labels, in_cohort)
    cohort = vectors[album.calibration][in_cohort]
    part.stats = np.stack(cohort_stats(vectors, cohort, fit["top_n"]), axis=1)
    part.group_stats = np.stack(cohort_stats(groups, cohort, fit["top_n"]), axis=1)
    return {
        f"{name}_raw": report(part, *part.raw(keys), threshold),
        f"{name}_normalised": dict(
            report(part, *part.served(keys, fit["raw_floor"]), fit["threshold"]),
            raw_floor=round(fit["raw_floor"], 4),
            top_n=fit["top_n"],
        ),
    }


def pair_auc(album: Album, vectors: np.ndarray) -> dict:
    """Verification AUC (all positive pairs, as many random negatives) of held-out identities, per
    source with 2+ held-out identities, East-Asian first, and over all held-out faces."""
    out = {}
    held_out = ~album.calibration
    order = list(EAST_ASIAN) + sorted(set(album.sources) - set(EAST_ASIAN))
    for name, mask in [(s, held_out & (album.sources == s)) for s in order] + [("all", held_out)]:
        if len(set(album.identities[mask])) >= 2:
            pos, neg = calibration.pair_similarities(vectors[mask], list(album.identities[mask]))
            if len(pos) and len(neg):
                out[name] = round(calibration.roc_auc(pos, neg), 4)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="another bundle than the default one")
    parser.add_argument("--fresh", action="store_true", help="embed the album again")
    args = parser.parse_args(argv)
    loaded = cpu_engine(args.bundle)
    if loaded is None:
        return 1
    root, engine = loaded
    album = cached_album(engine, root, args.fresh)
    keys = np.nonzero(album.is_key)[0]
    results = {
        "bundle": engine.version,
        "album_photos": len(album.vectors),
        "distractor_faces": len(album.groups),
        "east_asian_identities": {
            "calibration": len(set(album.identities[album.east_asian & album.calibration])),
            "holdout": len(set(album.identities[album.east_asian & ~album.calibration])),
        },
        "levers": {},
    }
    results["pair_auc_holdout"] = {}
    if len(engine.parts) > 1:
        for part, vectors, groups in zip(engine.parts, engine.split(album.vectors), engine.split(album.groups)):
            name = "dlib" if "dlib" in part.name else "faceres" if "faceres" in part.name else part.name
            results["levers"].update(part_levers(album, name, vectors, groups))
            results["pair_auc_holdout"][name] = pair_auc(album, vectors)
    results["pair_auc_holdout"]["served"] = pair_auc(album, album.vectors)
    results["levers"]["raw"] = report(album, *album.raw(keys), engine.threshold)
    if engine.normalisation:
        results["levers"].update(normalised_levers(album, engine.normalisation))
        grouping = GroupingParams.from_model_info({"grouping": engine.grouping})
        if grouping is not None and engine.normalisation.get("expansion"):
            results["levers"].update(people_aware_levers(album, engine.normalisation, grouping))
    write_results(f"search_quality_{engine.version}.json" if args.bundle else "search_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
