"""Exact search speed on synthetic unit vectors of the bundle's dimension (1153-d: dlib 129 + faceres
1024), the warm scans also at 129-d (dlib alone, the previous default) in the same run.

    .venv/bin/python -m benchmarks.search_speed   → benchmarks/results/search_speed.json
    .venv/bin/python -m benchmarks.search_speed --warm   → benchmarks/results/search_speed_warm.json

warm: a search against vectors already cached in the container (matrix-vector product and
argpartition top-k, as ExactIndex does).  cold: loading the user's vectors from the store
(BSON binary float32 → one matrix) then searching; measured on mongomock for 10k and 100k faces
(1M is not filled: mongomock's in-memory documents would need several GB).
A whole search through the API, on the local stack's store: ``benchmarks.api_search``.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

from benchmarks.common import percentiles, write_results
from chalicelib.mongo_connection import open_database
from chalicelib.photo_store import PhotoStore, vector_to_binary
from chalicelib.score_norm import KeyNormalisation, QueryExpansion
from chalicelib.settings import Settings
from chalicelib.vector_index import ExactIndex

DLIB_DIM = 129


def bundle_dim() -> int:
    """The built bundle's embedding dimension (1153 when no bundle is built)."""
    from gpu_endpoint.bundle import DEFAULT_DIR, Manifest

    return Manifest.load(DEFAULT_DIR).embedding_dim if Manifest.exists(DEFAULT_DIR) else 1153


DIM = bundle_dim()


def unit_vectors(n, rng, dim=None):
    v = rng.standard_normal((n, dim or DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def warm(n, rng, dim) -> dict:
    """Cosine ranking, cohort-normalised ranking (AS-norm) and normalised ranking with query
    expansion at its most expensive (the served default: 10 votes over a full pool), alternating."""
    matrix = unit_vectors(n, rng, dim)
    ids = [{"face_id": f"f{i}", "photo_id": f"p{i}"} for i in range(n)]
    stats = np.column_stack([rng.uniform(0.5, 0.8, n), rng.uniform(0.02, 0.1, n)])

    class Cached(ExactIndex):
        def _vectors(self, owner, model_version):
            return ids, matrix, stats

    engine = Cached(photo_store=None)
    key_norm = KeyNormalisation(0.6, 0.05, threshold=-1e9)
    expanded = KeyNormalisation(0.6, 0.05, -1e9, QueryExpansion(min_score=-1e9, max_faces=10, weight=2.0, threshold=0))
    queries = unit_vectors(50, rng, dim)
    times, normalised_times, expanded_times = [], [], []
    for q in queries:
        start = time.perf_counter()
        hits = engine.nearest("u", "v", q, 100, -1.0)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.nearest("u", "v", q, 100, -1.0, key_norm)
        normalised_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.nearest("u", "v", q, 100, -1.0, expanded)
        expanded_times.append(time.perf_counter() - start)
    exact = np.argsort(-(matrix @ queries[-1]))[:100]
    recall = len({h[0] for h in hits} & {f"f{i}" for i in exact}) / 100
    normalised, expanded_ = percentiles(normalised_times), percentiles(expanded_times)
    return dict(
        percentiles(times),
        faces=n,
        recall_at_100=recall,
        matrix_mb=round(matrix.nbytes / 2**20, 1),
        normalised_p50_ms=normalised["p50_ms"],
        normalised_p95_ms=normalised["p95_ms"],
        expanded_p50_ms=expanded_["p50_ms"],
        expanded_p95_ms=expanded_["p95_ms"],
    )


def indexing_cost(rng, cohort_faces: int = 845, top_n: int = 20) -> dict:
    """The extra work per indexed face with cohort normalisation: its μ, σ against the cohort
    (the bundle's size), for one face and for a photo's worth (8) at once."""
    from chalicelib.score_norm import cohort_stats

    cohort = unit_vectors(cohort_faces, rng)
    out = {"cohort_faces": cohort_faces, "top_n": top_n}
    for faces in (1, 8):
        batch = unit_vectors(faces, rng)
        times = []
        for _ in range(200):
            start = time.perf_counter()
            cohort_stats(batch, cohort, top_n)
            times.append(time.perf_counter() - start)
        out[f"{faces}_faces"] = percentiles(times)
    return out


def cold(n, rng) -> dict:
    # No unique indexes: mongomock checks them by scanning, which would make filling it quadratic.
    photo_store = PhotoStore(open_database(Settings(store_backend="memory")))
    vectors = unit_vectors(n, rng)
    photo_store.faces.insert_many(
        [
            {
                "owner": "u",
                "face_id": f"f{i}",
                "photo_id": f"p{i}",
                "model_version": "v",
                "embedding": vector_to_binary(vectors[i]),
            }
            for i in range(n)
        ]
    )
    times = []
    tracemalloc.start()
    for _ in range(3):
        engine = ExactIndex(photo_store)  # a fresh container: nothing cached
        start = time.perf_counter()
        engine.nearest("u", "v", vectors[0], 100, -1.0)
        times.append(time.perf_counter() - start)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dict(percentiles(times), faces=n, peak_python_mb=round(peak / 2**20, 1))


def main() -> int:
    rng = np.random.default_rng(0)
    if "--warm" in sys.argv[1:]:  # the warm scans only (minutes faster): search_speed_warm.json
        write_results(
            "search_speed_warm.json",
            {
                "dim": DIM,
                "warm": [warm(n, rng, DIM) for n in (10_000, 100_000, 1_000_000)],
                f"warm_{DLIB_DIM}d": [warm(n, rng, DLIB_DIM) for n in (10_000, 100_000, 1_000_000)],
                "indexing_cohort_stats": indexing_cost(rng),
            },
        )
        return 0
    results = {
        "dim": DIM,
        "warm": [warm(n, rng, DIM) for n in (10_000, 100_000, 1_000_000)],
        "cold": [cold(n, rng) for n in (10_000, 100_000)],
    }
    write_results("search_speed.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
