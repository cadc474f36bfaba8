"""Grouping faces into people on real faces, as the product groups them (``chalicelib.grouping``
with the bundle's grouping calibration): BCubed and pairwise precision/recall, people found vs
true identities, and people holding two faces of one photo (must be 0).

The album is one user's: every labelled photo of the **held-out** identities of every source
(its largest face), plus every face of the group photos as unlabelled distractors (their faces
share photos, so the cannot-link rule is exercised). The parameters were fitted by the bundle
builder on the calibration identities only (``model_factory.calibration.fit_grouping``); the best
grid point of each linkage is evaluated here too, to show why the default won. Slices: East-Asian
(kpop, asian_faces, casia_v5) first, then the rest, then all. The served grouping is also run on the
graph as a large album's fanned-out workers build it (``fanned_out``: row blocks, columns streamed in
chunks), which must give the same people.

    .venv/bin/python -m benchmarks.people_quality   → benchmarks/results/people_quality.json
    .venv/bin/python -m benchmarks.people_quality --bundle DIR   → people_quality_<bundle version>.json

The embedded album is cached (``benchmarks.search_quality.cached_album``; ``--fresh`` re-embeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_engine, majority, write_results
from benchmarks.search_quality import EAST_ASIAN, Album, cached_album
from chalicelib.grouping import GroupingParams, agglomerate, knn_edges, nearest_rows, undirected
from model_factory.calibration import grouping_scores


def holdout_album(album: Album):
    """Vectors, cohort stats, photo ids, identities ('' for distractors) and sources."""
    mask = album.splits == "holdout"
    n = int(mask.sum())
    vectors = np.vstack([album.vectors[mask], album.groups])
    stats = np.vstack([album.stats[mask], album.group_stats])
    photos = [f"single-{i}" for i in range(n)] + [f"group-{p}" for p in album.group_photo.tolist()]
    identities = np.concatenate([album.identities[mask], np.full(len(album.groups), "")])
    sources = np.concatenate([album.sources[mask], np.full(len(album.groups), "groups")])
    return vectors, stats, photos, identities, sources


def evaluate(params: GroupingParams, vectors, stats, photos, identities, sources) -> dict:
    started = time.perf_counter()
    edges = knn_edges(vectors, stats, params.k)
    labels = agglomerate(len(vectors), edges, photos, params.threshold, params.min_faces, params.linkage)
    seconds = time.perf_counter() - started
    east = np.isin(sources, EAST_ASIAN)
    labelled = identities != ""
    return {
        "params": params.to_json(),
        "east_asian": grouping_scores(labels, identities, photos, east),
        **{s: grouping_scores(labels, identities, photos, sources == s) for s in EAST_ASIAN},
        "rest": grouping_scores(labels, identities, photos, labelled & ~east),
        "all": grouping_scores(labels, identities, photos, labelled),
        "people_with_two_faces_of_one_photo": grouping_scores(labels, identities, photos, np.ones(len(labels), bool))[
            "people_with_two_faces_of_one_photo"
        ],
        "seconds": round(seconds, 3),
    }


def fanned_out_edges(vectors, stats, k: int, workers: int = 8, chunk: int = 64) -> tuple[np.ndarray, ...]:
    """The graph as ``workers`` graph workers build it (``chalicelib.graph_fanout``): a block of rows
    each, every face's vectors streamed in chunks of ``chunk``, the blocks merged."""
    n = len(vectors)
    bounds = np.linspace(0, n, workers + 1).round().astype(int).tolist()
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        columns = ((c, vectors[c : c + chunk], stats[c : c + chunk]) for c in range(0, n, chunk))
        parts.append(nearest_rows(vectors[a:b], stats[a:b], a, columns, k))
    return undirected(*(np.concatenate(column) for column in zip(*parts)))


MAX_KEY_FACES = 30  # as chalicelib.people: a person's faces used as search keys
ANSWERED = 5


def person_search(vectors, stats, members: list, keys: list, rejected: set, raw_floor: float, threshold: float, others):
    """Search by person as the API does it: the members, plus every face matching one of the key
    faces (raw cosine ≥ the floor, normalised score ≥ the threshold) that is in no other person
    (``others``: a mask of the faces other people hold; ``chalicelib.people_aware``), rejected faces
    left out. Returns (result faces, the suggestions a user is asked about, best first: matching
    faces not rejected, other people's included)."""
    raw = vectors[keys] @ vectors.T
    scores = 0.5 * ((raw - stats[keys, :1]) / stats[keys, 1:] + (raw - stats[None, :, 0]) / stats[None, :, 1])
    scores = np.where((raw >= raw_floor) & (scores >= threshold), scores, -np.inf).max(axis=0)
    scores[members] = -np.inf
    scores[list(rejected)] = -np.inf
    candidates = [int(i) for i in np.argsort(-scores) if np.isfinite(scores[i])]
    return set(members) | {i for i in candidates if not others[i]}, candidates


def feedback_value(labels, vectors, stats, identities, sources, norm: dict) -> dict:
    """Search by person before and after a user answers its top suggestions with the truth (each
    person stands for its majority identity; a distractor in the results counts as wrong)."""
    rows = {"before": [], "after": []}
    for label in range(int(labels.max()) + 1):
        members = [int(i) for i in np.nonzero(labels == label)[0]]
        named = [identities[i] for i in members if identities[i]]
        if not named:
            continue
        truth = majority(named)
        relevant = set(np.nonzero(identities == truth)[0].tolist())
        source = sources[next(iter(relevant))]
        floor, cut = float(norm["raw_floor"]), float(norm["threshold"])
        others = (labels >= 0) & (labels != label)
        found, candidates = person_search(vectors, stats, members, members[:MAX_KEY_FACES], set(), floor, cut, others)
        rows["before"].append((source, found, relevant))
        confirmed: list = []
        rejected: set = set()
        for i in candidates[:ANSWERED]:
            if identities[i] == truth:
                confirmed.append(i)
            else:
                rejected.add(i)
        keys = (confirmed + members)[:MAX_KEY_FACES]
        others[confirmed] = False  # a confirmed face joins this person
        found, _ = person_search(vectors, stats, members + confirmed, keys, rejected, floor, cut, others)
        rows["after"].append((source, found, relevant))
    out = {}
    for when, results in rows.items():
        out[when] = {}
        for name, keep in (
            ("east_asian", lambda s: s in EAST_ASIAN),
            ("rest", lambda s: s not in EAST_ASIAN),
            ("all", lambda s: True),
        ):
            chosen = [(f, r) for s, f, r in results if keep(s)]
            precision = [len(f & r) / len(f) for f, r in chosen]
            recall = [len(f & r) / len(r) for f, r in chosen]
            out[when][name] = {
                "people": len(chosen),
                "precision": round(float(np.mean(precision)), 4) if chosen else None,
                "recall": round(float(np.mean(recall)), 4) if chosen else None,
            }
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
    fitted = engine.manifest.grouping_report
    if not fitted:
        print("this bundle has no grouping calibration: rebuild it (./dev setup)", file=sys.stderr)
        return 1
    album = cached_album(engine, root, args.fresh)
    data = holdout_album(album)
    served = GroupingParams.from_model_info({"grouping": fitted})
    vectors, stats, photos, identities, sources = data
    edges = knn_edges(vectors, stats, served.k)
    labels = agglomerate(len(vectors), edges, photos, served.threshold, served.min_faces, served.linkage)
    fanned = fanned_out_edges(vectors, stats, served.k)
    fanned_labels = agglomerate(len(vectors), fanned, photos, served.threshold, served.min_faces, served.linkage)
    east = np.isin(sources, EAST_ASIAN)
    results = {
        "bundle": engine.version,
        "album": {"faces": len(data[0]), "distractor_faces": len(album.groups)},
        "served": evaluate(served, *data),
        "fanned_out": {
            "workers": 8,
            "same_edges_as_one_job": bool(all(np.array_equal(a, b) for a, b in zip(edges[:2], fanned[:2]))),
            "same_people_as_one_job": bool(np.array_equal(labels, fanned_labels)),
            "east_asian": grouping_scores(fanned_labels, identities, photos, east),
            "all": grouping_scores(fanned_labels, identities, photos, identities != ""),
        },
        "search_by_person_feedback": {
            "what": f"each person's search (members + matches above the search threshold) before and after "
            f"answering its top {ANSWERED} suggestions with the truth; macro averages over people",
            **feedback_value(labels, vectors, stats, identities, sources, engine.normalisation),
        },
        "calibration": fitted.get("calibration"),
        "best_per_linkage_on_calibration": {},
    }
    for linkage, row in fitted.get("best_per_linkage", {}).items():
        params = GroupingParams(linkage, int(row["k"]), int(row["min_faces"]), float(row["threshold"]))
        results["best_per_linkage_on_calibration"][linkage] = {
            "calibration": {k: row[k] for k in ("bcubed_precision", "bcubed_recall", "bcubed_f1")},
            "holdout": evaluate(params, *data),
        }
    write_results(f"people_quality_{engine.version}.json" if args.bundle else "people_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
