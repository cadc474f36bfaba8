"""People grouping speed and memory on this machine's CPU: a full regrouping of one user's 10,000
and 100,000 faces (the nearest-neighbour graph, then the agglomeration), and the cost of assigning
one newly indexed face (one exact vector search over the user's faces, normalised, top k).

The faces are synthetic but shaped like the served ones: 1153-d unit vectors, in people of 1 to
60 faces each, with cohort statistics drawn like the endpoint's; the grouping parameters are the
bundle's. Peak memory is the process's resident high-water mark, in a fresh child per size.

    .venv/bin/python -m benchmarks.people_speed [--sizes 10000 100000]   → benchmarks/results/people_speed.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time

import numpy as np

from benchmarks.common import write_results
from chalicelib.grouping import GroupingParams, agglomerate, knn_edges
from chalicelib.shared.score_norm import KeyNormalisation
from gpu_endpoint.bundle import DEFAULT_DIR, Manifest

DIM = 1153


def synthetic_people(n: int, seed: int = 0) -> np.ndarray:
    """The person of each face of the synthetic album: people of 1 to 60 faces, in order."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 61)))
    sizes[-1] -= sum(sizes) - n
    return np.repeat(np.arange(len(sizes)), sizes)


def synthetic_album(n: int, seed: int = 0, chunk: int = 100_000):
    """(vectors, stats, photos) of ``n`` faces, drawn ``chunk`` faces at a time (float32 throughout:
    a million faces need 4.6 GB, not three times that)."""
    owner = synthetic_people(n, seed)
    rng = np.random.default_rng(seed + 1)
    centres = rng.standard_normal((int(owner[-1]) + 1, DIM), dtype=np.float32)
    vectors = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        part = centres[owner[start : start + chunk]] + 0.9 * rng.standard_normal(
            (len(owner[start : start + chunk]), DIM), dtype=np.float32
        )
        vectors[start : start + chunk] = part / np.linalg.norm(part, axis=1, keepdims=True)
    stats = np.stack([rng.normal(0.25, 0.05, n), rng.uniform(0.03, 0.06, n)], axis=1).astype(np.float32)
    photos = [f"p{i // 2}" for i in range(n)]  # two faces a photo: the cannot-link rule is busy
    return vectors, stats, photos


def measure(n: int, params: dict, out) -> None:
    grouping = GroupingParams(**params)
    vectors, stats, photos = synthetic_album(n)
    started = time.perf_counter()
    edges = knn_edges(vectors, stats, grouping.k)
    graph = time.perf_counter() - started
    labels = agglomerate(n, edges, photos, grouping.threshold, grouping.min_faces, grouping.linkage)
    total = time.perf_counter() - started
    timings = []
    key = KeyNormalisation(float(stats[0, 0]), float(stats[0, 1]), grouping.threshold)
    for i in range(20):
        t = time.perf_counter()
        sims = vectors @ vectors[i]
        scores = key.scores(sims, stats[:, 0], stats[:, 1])
        np.argpartition(-scores, grouping.k)[: grouping.k + 1]
        timings.append(time.perf_counter() - t)
    out.put(
        {
            "faces": n,
            "graph_edges": int(len(edges[0])),
            "graph_seconds": round(graph, 1),
            "regroup_seconds": round(total, 1),
            "people": int(labels.max() + 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "assign_search_ms_median": round(1000 * float(np.median(timings)), 2),
        }
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args(argv)
    params = Manifest.load(DEFAULT_DIR).grouping
    if params is None:
        print("the bundle has no grouping calibration: rebuild it (./dev setup)", file=sys.stderr)
        return 1
    rows = []
    context = multiprocessing.get_context("spawn")
    for n in args.sizes:
        queue = context.Queue()
        child = context.Process(target=measure, args=(n, params, queue))
        child.start()
        rows.append(queue.get())
        child.join()
        print(json.dumps(rows[-1]), flush=True)
    write_results("people_speed.json", {"cpu": "this machine (2 cores)", "params": params, "sizes": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
