"""Grouping faces into people on real faces, as the product groups them (``chalicelib.grouping``
with the bundle's grouping calibration): BCubed and pairwise precision/recall, people found vs
true identities, and people holding two faces of one photo (must be 0).

The album is one user's: every labelled photo of the **held-out** identities of every source
(its largest face), plus every face of the group photos as unlabelled distractors (their faces
share photos, so the cannot-link rule is exercised). The parameters were fitted by the bundle
builder on the calibration identities only (``gpu_endpoint.calibration.fit_grouping``); the best
grid point of each linkage is evaluated here too, to show why the default won. Slices: East-Asian
(kpop, asian_faces, casia_v5) first, then the rest, then all.

    .venv/bin/python -m benchmarks.people_quality   → benchmarks/results/people_quality.json

The embedded album is cached in ``.cache/benchmarks/`` per set of model files (``--fresh`` re-embeds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_engine, write_results
from benchmarks.search_quality import EAST_ASIAN, Album, embed
from chalicelib.grouping import GroupingParams, agglomerate, knn_edges
from gpu_endpoint.calibration import grouping_scores

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "benchmarks"
FIELDS = ("vectors", "groups", "sources", "identities", "splits", "stats", "group_stats", "group_photo")


def cached_album(engine, root, fresh: bool) -> Album:
    """Keyed by the bundle's model and cohort files: the same files embed the same vectors."""
    key = hashlib.sha256(json.dumps(engine.manifest.files, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"album-{key}.npz"
    if path.exists() and not fresh:
        data = np.load(path, allow_pickle=False)
        return Album(*(data[name] for name in FIELDS))
    album = embed(engine, root)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: getattr(album, name) for name in FIELDS})
    return album


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="embed the album again")
    args = parser.parse_args(argv)
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    fitted = engine.manifest.document.get("grouping")
    if not fitted:
        print("this bundle has no grouping calibration: rebuild it (./dev setup)", file=sys.stderr)
        return 1
    album = cached_album(engine, root, args.fresh)
    data = holdout_album(album)
    served = GroupingParams.from_model_info({"grouping": fitted})
    results = {
        "bundle": engine.version,
        "album": {"faces": len(data[0]), "distractor_faces": len(album.groups)},
        "served": evaluate(served, *data),
        "calibration": fitted.get("calibration"),
        "best_per_linkage_on_calibration": {},
    }
    for linkage, row in fitted.get("best_per_linkage", {}).items():
        params = GroupingParams(linkage, int(row["k"]), int(row["min_faces"]), float(row["threshold"]))
        results["best_per_linkage_on_calibration"][linkage] = {
            "calibration": {k: row[k] for k in ("bcubed_precision", "bcubed_recall", "bcubed_f1")},
            "holdout": evaluate(params, *data),
        }
    write_results("people_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
