"""Exact search speed on synthetic unit vectors of the bundle's dimension (1153-d: dlib 129 + faceres
1024), the warm scans also at 129-d (dlib alone, the previous default) in the same run.
``bounded``: search as the product runs it (the bundle's cosine floor, normalisation and query
expansion) over album-like vectors, the full scan against the low-rank bound
(``chalicelib.stores.low_rank_bound``) and the faces it leaves to score (``kept_by_bound``: the share whose
cosine bound reaches the floor; ``scored_exactly``: how many of those could pass or enter expansion's
pool), alternating, same results required.

    .venv/bin/python -m benchmarks.search_speed   → benchmarks/results/search_speed.json
    .venv/bin/python -m benchmarks.search_speed --warm   → benchmarks/results/search_speed_warm.json
    .venv/bin/python -m benchmarks.search_speed --bounded   → benchmarks/results/search_speed_bounded.json
    .venv/bin/python -m benchmarks.search_speed --cold   → benchmarks/results/search_speed_cold.json

warm: a search against vectors already cached in the container (matrix-vector product and
argpartition top-k, as ExactIndex does).  cold: loading the user's vectors from the embedded store
(BSON binary float32 → one matrix) then searching, at 10k and 100k faces (its per-face cost is flat;
a million would take hours to fill: the fill slows as the store grows).
A whole search through the API, on the local stack's store: ``benchmarks.api_search``.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc

import numpy as np

from benchmarks.common import percentiles, write_results
from chalicelib.settings import Settings
from chalicelib.shared.score_norm import KeyNormalisation, QueryExpansion
from chalicelib.stores.mongo_connection import open_database
from chalicelib.stores.photo_store import PhotoStore, vector_to_binary
from chalicelib.stores.vector_index import ExactIndex

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
            return ids, matrix, stats, None  # a full scan: no floor to prune by

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


def album_like(n: int, rng, cohort: np.ndarray, spread: float = 0.45, directions: int = 200) -> np.ndarray:
    """``n`` unit vectors shaped like an album's: each is a face of the bundle's cohort (its
    calibration identities) plus noise along the cohort's own principal directions, scaled by their
    spread. Random unit vectors would be no test of the bound: real embeddings are concentrated.
    With the default ``spread``, about as many faces pass the cosine floor per key as in the real
    album of ``benchmarks.search_quality`` (reported as ``passing_floor``)."""
    centred = cohort - cohort.mean(axis=0)
    _, sizes, axes = np.linalg.svd(centred, full_matrices=False)
    noise_basis = (sizes[:directions, None] * axes[:directions] / np.sqrt(len(cohort))).astype(np.float32)
    out = np.empty((n, cohort.shape[1]), np.float32)
    for start in range(0, n, 50_000):
        rows = slice(start, min(n, start + 50_000))
        count = rows.stop - rows.start
        noise = rng.standard_normal((count, directions), dtype=np.float32) @ noise_basis
        out[rows] = cohort[rng.integers(0, len(cohort), count)] + spread * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def bounded(n: int, rng, queries: int = 40) -> dict:
    """The full scan against the low-rank bound at ``n`` album-like faces, each key searched by both
    in turn, with the bundle's decision (floor, normalisation, expansion) and every face's statistics
    against the bundle's cohort, as the endpoint computes them; and the same key's people-grouping
    neighbours (``neighbours_*``: no cosine floor, the bundle's grouping threshold and k)."""
    from chalicelib.shared.score_norm import cohort_stats
    from chalicelib.stores.low_rank_bound import LowRankBound
    from chalicelib.stores.vector_index import _rows_to_score
    from gpu_endpoint.bundle import DEFAULT_DIR
    from gpu_endpoint.engine import FaceEngine

    engine = FaceEngine(DEFAULT_DIR, providers=["CPUExecutionProvider"])
    norm, cohort = engine.search_settings, engine.cohort
    top_n = engine.normalisation["top_n"]
    matrix = album_like(n, rng, cohort)
    stats = np.vstack(
        [np.column_stack(cohort_stats(matrix[i : i + 20_000], cohort, top_n)) for i in range(0, n, 20_000)]
    )
    ids = [{"face_id": f"f{i}", "photo_id": f"p{i}"} for i in range(n)]
    start = time.perf_counter()
    bound = LowRankBound.fit(matrix)
    fit_s = time.perf_counter() - start

    class Cached(ExactIndex):
        def _vectors(self, owner, model_version):
            return ids, matrix, stats, bound if self.bound_min_faces <= n else None

    full, pruned = Cached(None, bound_min_faces=n + 1), Cached(None, bound_min_faces=n)
    expansion = QueryExpansion.from_settings(norm["expansion"])
    grouping = engine.grouping
    times: dict = {"full": [], "bounded": [], "neighbours_full": [], "neighbours_bounded": []}
    kept, scored, passing, same = [], [], [], True
    for i in rng.choice(n, queries, replace=False):
        key_mean, key_std = stats[i]
        key_norm = KeyNormalisation(float(key_mean), float(key_std), norm["threshold"], expansion)
        neighbours = KeyNormalisation(float(key_mean), float(key_std), grouping["threshold"])
        results = {}
        for name, index in (("full", full), ("bounded", pruned)):
            start = time.perf_counter()
            results[name] = index.nearest("u", "v", matrix[i], 100, norm["raw_floor"], key_norm)
            times[name].append(time.perf_counter() - start)
            # A new face's people-grouping neighbours: no cosine floor, the grouping threshold.
            start = time.perf_counter()
            results[f"neighbours_{name}"] = index.nearest("u", "v", matrix[i], grouping["k"] + 1, -1.0, neighbours)
            times[f"neighbours_{name}"].append(time.perf_counter() - start)
        same &= [h[0] for h in results["full"]] == [h[0] for h in results["bounded"]]
        same &= [h[0] for h in results["neighbours_full"]] == [h[0] for h in results["neighbours_bounded"]]
        rows, upper = bound.candidates(matrix[i], norm["raw_floor"])
        kept.append(len(rows) / n)
        scored.append(len(_rows_to_score(matrix, matrix[i], rows, upper, stats, norm["raw_floor"], key_norm)[0]))
        passing.append(float((matrix @ matrix[i] >= norm["raw_floor"]).mean()))
    return {
        "faces": n,
        "full_scan": percentiles(times["full"]),
        "bounded": percentiles(times["bounded"]),
        "neighbours_full_scan": percentiles(times["neighbours_full"]),
        "neighbours_bounded": percentiles(times["neighbours_bounded"]),
        "same_results_as_full_scan": bool(same),
        "raw_floor": norm["raw_floor"],
        "passing_floor": {"mean": round(float(np.mean(passing)), 4), "max": round(float(np.max(passing)), 4)},
        "kept_by_bound": {
            "mean": round(float(np.mean(kept)), 4),
            "p95": round(float(np.percentile(kept, 95)), 4),
            "max": round(float(np.max(kept)), 4),
        },
        "scored_exactly": {"mean": round(float(np.mean(scored))), "max": int(np.max(scored))},
        "bound_blocks": list(bound.blocks),
        "bound_fit_s": round(fit_s, 2),
        "matrix_mb": round(matrix.nbytes / 2**20, 1),
        "bound_mb": round(bound.nbytes / 2**20, 1),
    }


def indexing_cost(rng, cohort_faces: int = 845, top_n: int = 20) -> dict:
    """The extra work per indexed face with cohort normalisation: its μ, σ against the cohort
    (the bundle's size), for one face and for a photo's worth (8) at once."""
    from chalicelib.shared.score_norm import cohort_stats

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


def cold(n: int, rng) -> dict:
    """A fresh container's first search: the user's vectors loaded from the embedded store (the local
    stack's TinyMongo on SQLite; mongomock measured only its own copying), then searched. The faces
    are written in bulk, as ``replace_faces`` stores them, into a temporary store."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        photo_store = PhotoStore(open_database(Settings(store_backend="embedded", embedded_store_path=folder)))
        photo_store.ensure_indexes()
        vectors = unit_vectors(n, rng)
        start = time.perf_counter()
        for first in range(0, n, 1000):
            photo_store.faces.insert_many(
                [
                    {
                        "owner": "u",
                        "face_id": f"f{i}",
                        "photo_id": f"p{i}",
                        "model_version": "v",
                        "embedding": vector_to_binary(vectors[i]),
                        "cohort_mean": 0.6,
                        "cohort_std": 0.05,
                    }
                    for i in range(first, min(n, first + 1000))
                ]
            )
        fill_s = time.perf_counter() - start
        times = []
        for _ in range(3):
            engine = ExactIndex(photo_store)  # a fresh container: nothing cached
            start = time.perf_counter()
            engine.nearest("u", "v", vectors[0], 100, -1.0)
            times.append(time.perf_counter() - start)
        tracemalloc.start()  # one more load for its peak memory: tracing slows it several times
        ExactIndex(photo_store).nearest("u", "v", vectors[0], 100, -1.0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return dict(
        percentiles(times),
        faces=n,
        per_face_ms=round(statistics.median(times) * 1000 / n, 3),
        peak_python_mb=round(peak / 2**20, 1),
        fill_s=round(fill_s, 1),
    )


def main() -> int:
    rng = np.random.default_rng(0)
    if "--cold" in sys.argv[1:]:  # the embedded store's cold loads alone: search_speed_cold.json
        results = {"dim": DIM, "store": "embedded", "cold": [cold(n, rng) for n in (10_000, 100_000)]}
        write_results("search_speed_cold.json", results)
        return 0
    if "--bounded" in sys.argv[1:]:  # the bound alone: search_speed_bounded.json
        results = {"dim": DIM, "bounded": [bounded(n, rng) for n in (200_000, 1_000_000)]}
        write_results("search_speed_bounded.json", results)
        return 0
    if "--warm" in sys.argv[1:]:  # the warm scans only (minutes faster): search_speed_warm.json
        write_results(
            "search_speed_warm.json",
            {
                "dim": DIM,
                "warm": [warm(n, rng, DIM) for n in (10_000, 100_000, 1_000_000)],
                f"warm_{DLIB_DIM}d": [warm(n, rng, DLIB_DIM) for n in (10_000, 100_000, 1_000_000)],
                "indexing_cohort_stats": indexing_cost(rng),
                "bounded": [bounded(n, rng) for n in (200_000, 1_000_000)],
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
