"""Nearest faces of one user: an exact numpy scan (local default and fallback) or
Atlas ``$vectorSearch`` (cloud).  Both return (face_id, photo_id, cosine similarity, score),
best first, only from the caller's faces of the key's bundle version, with cosine ≥ the
threshold. With a ``KeyNormalisation`` the score is the cohort-normalised one
(``chalicelib.shared.score_norm``), results must also pass its threshold (or its query expansion's)
and are ranked by it; without one the score is the cosine."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from chalicelib.shared.score_norm import KeyNormalisation
from chalicelib.stores.low_rank_bound import LowRankBound, gathered_dot
from chalicelib.stores.photo_store import PhotoStore

Hit = tuple[str, str, float, float]


class VectorIndex(Protocol):
    """What search needs of a vector index; ``ExactIndex`` and ``AtlasIndex`` are the two."""

    def nearest(
        self,
        owner: str,
        model_version: str,
        vector,
        limit: int,
        threshold: float,
        key_norm: KeyNormalisation | None = None,
    ) -> list[Hit]:
        """The owner's faces of ``model_version`` that pass the decision for ``vector``, best first."""
        ...

    def nearest_many(
        self,
        owner: str,
        model_version: str,
        vectors: list,
        limit: int,
        threshold: float,
        key_norms: list[KeyNormalisation | None],
    ) -> list[list[Hit]]:
        """``nearest`` for each of several keys (a person's faces), in their order."""
        ...


# From this many faces of one user on, search pre-filters with a low-rank bound
# (``chalicelib.stores.low_rank_bound``); below it a full scan takes ≤ 11 ms (search_speed_warm.json).
BOUND_MIN_FACES = 200_000


class ExactIndex:
    """One matrix-vector product over the user's vectors, cached per container and
    invalidated by the user's change counter (bumped by indexing and deletion). From
    ``bound_min_faces`` faces on, only the faces a low-rank bound cannot rule out are scored:
    the same results, a fraction of the memory read."""

    def __init__(self, photo_store: PhotoStore, max_cached_users: int = 64, bound_min_faces: int = BOUND_MIN_FACES):
        self.photo_store = photo_store
        self.max_cached_users = max_cached_users
        self.bound_min_faces = bound_min_faces
        self._cache: dict = {}
        self._lock = threading.Lock()
        self.loads = 0

    def _vectors(self, owner: str, model_version: str):
        version = self.photo_store.versions.current(owner)
        key = (owner, model_version)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] == version:
                return cached[1:]
        ids, matrix, stats = self.photo_store.face_vectors(owner, model_version)
        bound = LowRankBound.fit(matrix) if len(ids) >= self.bound_min_faces else None
        self.loads += 1
        with self._lock:
            if len(self._cache) >= self.max_cached_users:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (version, ids, matrix, stats, bound)
        return ids, matrix, stats, bound

    def nearest(
        self,
        owner: str,
        model_version: str,
        vector,
        limit: int,
        threshold: float,
        key_norm: KeyNormalisation | None = None,
    ) -> list[Hit]:
        """The owner's faces nearest to ``vector``, scored exactly in the container, best first."""
        ids, matrix, stats, bound = self._vectors(owner, model_version)
        if not ids:
            return []
        query = np.asarray(vector, np.float32)
        if matrix.shape[1] != query.shape[0]:
            return []
        # rows: the faces scored (all of them, or those the bounds cannot rule out), in order. Without
        # a cosine floor (people grouping's neighbours) only a normalised threshold can rule faces out.
        rows = None
        if bound is not None and (threshold > -1.0 or (key_norm is not None and key_norm.threshold is not None)):
            rows, upper = bound.candidates(query, threshold)
            rows, sims = _rows_to_score(matrix, query, rows, upper, stats, threshold, key_norm)
            stats = stats[rows]
        else:
            sims = matrix @ query
        return _ranked(ids, matrix, stats, sims, rows, threshold, key_norm, limit)

    def nearest_many(
        self,
        owner: str,
        model_version: str,
        vectors: list,
        limit: int,
        threshold: float,
        key_norms: list[KeyNormalisation | None],
    ) -> list[list[Hit]]:
        """One matrix product for all the keys (the album's vectors read once, not once a key);
        beyond the bound's size, key by key."""
        if not vectors:
            return []
        ids, matrix, stats, bound = self._vectors(owner, model_version)
        queries = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
        if bound is not None or not ids or matrix.shape[1] != queries.shape[1]:
            return [self.nearest(owner, model_version, v, limit, threshold, k) for v, k in zip(vectors, key_norms)]
        all_sims = queries @ matrix.T  # (keys, faces): each row what ``matrix @ query`` gives
        return [
            _ranked(ids, matrix, stats, sims, None, threshold, key_norm, limit)
            for sims, key_norm in zip(all_sims, key_norms)
        ]


def _ranked(ids, matrix, stats, sims, rows, threshold: float, key_norm: KeyNormalisation | None, limit: int) -> list:
    """The hits of one key from its cosines ``sims`` with the faces ``rows`` (None: all of them),
    normalised, thresholded, expanded and ranked."""
    scores = sims if key_norm is None else key_norm.scores(sims, stats[:, 0], stats[:, 1])
    passing = sims >= threshold
    if key_norm is not None:
        passing &= key_norm.passes(scores)
        if key_norm.expansion is not None:
            pool = key_norm.expansion.candidates(scores, sims >= threshold)
            scores, passing = key_norm.expansion.rescore(
                sims, scores, passing, pool, matrix[pool if rows is None else rows[pool]], stats[:, 0], stats[:, 1]
            )
    candidates = np.nonzero(passing)[0]
    k = min(limit, len(candidates))
    if k == 0:
        return []
    top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    top = top[np.argsort(-scores[top], kind="stable")]
    found = top if rows is None else rows[top]
    return [(ids[i]["face_id"], ids[i]["photo_id"], float(sims[j]), float(scores[j])) for i, j in zip(found, top)]


def _rows_to_score(matrix, query, rows, upper, stats, floor: float, key_norm: KeyNormalisation | None):
    """Of the faces the bound kept (``rows``, with upper bounds ``upper`` of their cosines), those
    search must score to give the full scan's results, ascending, with their cosines. The normalised
    score grows with the cosine, so ``upper`` bounds it too: only faces whose bound reaches the
    normalised threshold (or query expansion's ``min_score``) can pass or vote. With confident
    matches, expansion also needs its pool, the best ``pool`` faces by normalised score: faces are
    scored in order of their bound until no unscored one could enter it."""
    if key_norm is None or key_norm.threshold is None:
        return rows, gathered_dot(matrix, rows, query)
    mean, std = stats[rows, 0], stats[rows, 1]
    bounds = key_norm.scores(upper, mean, std)
    expansion = key_norm.expansion
    bar = key_norm.threshold if expansion is None else min(key_norm.threshold, expansion.min_score)
    reach = bounds >= bar
    order = np.concatenate([np.nonzero(reach)[0], np.nonzero(~reach)[0]])  # sorted below only if needed
    count = int(reach.sum())
    sims = gathered_dot(matrix, rows[order[:count]], query)
    if expansion is not None:
        scores = key_norm.scores(sims, mean[order[:count]], std[order[:count]])
        eligible = (sims >= floor) & np.isfinite(scores)
        if (eligible & expansion.confident(scores, sims)).any():
            head = count  # the faces after the head, by their bound, best first
            order[head:] = order[head:][np.argsort(-bounds[order[head:]], kind="stable")]
            negated = -bounds[order[head:]]  # ascending, for searchsorted

            def reaching(score: float) -> int:  # the faces up to the last whose bound reaches ``score``
                return head + int(np.searchsorted(negated, -score, side="right"))

            while count < len(order):
                best = np.sort(scores[eligible])
                if len(best) >= expansion.pool:  # full: only a face whose bound reaches its last can enter
                    more = reaching(best[-expansion.pool])
                    if more <= count:
                        break
                else:  # not full yet: the next faces by their bound
                    more = min(len(order), count + expansion.pool)
                added = order[count:more]
                new = gathered_dot(matrix, rows[added], query)
                new_scores = key_norm.scores(new, mean[added], std[added])
                sims, scores = np.concatenate([sims, new]), np.concatenate([scores, new_scores])
                eligible = (sims >= floor) & np.isfinite(scores)
                count = more
    chosen = order[:count]
    ascending = np.argsort(chosen)
    return rows[chosen[ascending]], sims[ascending]


class AtlasIndex:
    """MongoDB Atlas Vector Search over the faces collection (index: atlas_vector_index.json)."""

    def __init__(self, photo_store: PhotoStore):
        self.photo_store = photo_store

    def nearest(
        self,
        owner: str,
        model_version: str,
        vector,
        limit: int,
        threshold: float,
        key_norm: KeyNormalisation | None = None,
    ) -> list[Hit]:
        """Candidates by cosine from Atlas; with ``key_norm``, re-scored and re-ranked here."""
        rows = self.photo_store.atlas_nearest(owner, model_version, vector, limit, threshold)
        sims = np.array([r["cosine"] for r in rows])
        if key_norm is None or not rows:
            return [(r["face_id"], r["photo_id"], float(s), float(s)) for r, s in zip(rows, sims)]
        stats = np.array([(r.get("cohort_mean"), r.get("cohort_std")) for r in rows], dtype=np.float64)
        scores = key_norm.scores(sims, stats[:, 0], stats[:, 1])
        passing = key_norm.passes(scores)
        if key_norm.expansion is not None:
            pool = key_norm.expansion.candidates(scores, np.ones(len(rows), bool))
            found = self.photo_store.vectors_of_faces(owner, [rows[i]["face_id"] for i in pool])
            pool = np.array([i for i in pool if rows[i]["face_id"] in found], np.int64)  # deleted meanwhile
            vectors = np.array([found[rows[i]["face_id"]] for i in pool], np.float32)
            scores, passing = key_norm.expansion.rescore(sims, scores, passing, pool, vectors, stats[:, 0], stats[:, 1])
        order = [i for i in np.argsort(-scores, kind="stable") if passing[i]]
        return [(rows[i]["face_id"], rows[i]["photo_id"], float(sims[i]), float(scores[i])) for i in order]

    def nearest_many(
        self,
        owner: str,
        model_version: str,
        vectors: list,
        limit: int,
        threshold: float,
        key_norms: list[KeyNormalisation | None],
    ) -> list[list[Hit]]:
        """One ``$vectorSearch`` a key: Atlas takes one query vector at a time."""
        return [self.nearest(owner, model_version, v, limit, threshold, k) for v, k in zip(vectors, key_norms)]
