"""Cohort score normalisation (adaptive symmetric normalisation, "AS-norm").

A raw cosine means different things for different faces: the embedder places every
East-Asian face close to every other, so a stranger of an East-Asian key scores ~0.8 while a
stranger of a Western key scores ~0.5, and one global threshold lets strangers in. AS-norm
judges each side against a cohort (embedded faces of many people, none of them the user's):
for key q and album face t with raw score s,

    s' = ½ [(s − μq) / σq + (s − μt) / σt]

where μ, σ are the mean and standard deviation of a face's ``top_n`` highest cohort scores.
μt, σt are computed once per face when it is indexed; μq, σq at search time.

``QueryExpansion`` then lets the key's most confident matches vote: a face the key alone scores
too low for may still be found through the other photos of the same person (the key is one pose,
one light; its matches are others).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

MIN_STD = 1e-4


def cohort_stats(
    vectors: np.ndarray, cohort: np.ndarray, top_n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(μ, σ) of each vector's ``top_n`` best cohort scores. ``exclude``: a boolean matrix
    (vectors × cohort) of pairs to leave out, e.g. a calibration face and its own person."""
    scores = np.asarray(vectors, np.float32) @ np.asarray(cohort, np.float32).T
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    top = -np.partition(-scores, top_n - 1, axis=1)[:, :top_n]
    return top.mean(axis=1), np.maximum(top.std(axis=1), MIN_STD)


def as_norm(
    raw: np.ndarray, key_mean: float | np.ndarray, key_std: float | np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Normalised scores of keys against album faces (their μ, σ in ``mean``, ``std``): one key's
    μ, σ as numbers, or many keys' as a column against a row of faces."""
    return 0.5 * ((raw - key_mean) / key_std + (raw - mean) / std)


# A match this close to the key is a copy of it (or the key face itself): it adds no new view.
DUPLICATE_COSINE = 0.999
EXPANSION_POOL = 300  # candidates re-scored by query expansion: the key's best, by normalised score


def best_candidates(scores: np.ndarray, eligible: np.ndarray, pool: int = EXPANSION_POOL) -> np.ndarray:
    """Indices of the ``pool`` best eligible faces by normalised score, best first."""
    found = np.nonzero(eligible & np.isfinite(scores))[0]
    if len(found) > pool:
        found = found[np.argpartition(-scores[found], pool - 1)[:pool]]
    return found[np.argsort(-scores[found], kind="stable")]


@dataclass(frozen=True)
class QueryExpansion:
    """Query expansion in score space, fitted by the bundle builder
    (``model_factory.calibration.fit_query_expansion``). The key's best ``max_faces`` matches with a
    normalised score ≥ ``min_score`` (its confident ones) are the expansion set E. Every face of the
    key's best ``pool`` candidates (cosine ≥ the raw floor) gets the expanded score

        s₂(t) = [s(q, t) + weight · Σ_{r ∈ E} s(r, t)] / (1 + weight · |E|)

    with s the AS-norm score, and passes if s₂ ≥ ``threshold`` or it passed on its own; its score
    becomes the better of s and s₂ (so the key's own face or a copy of it still comes first). With no
    confident match nothing changes. Scores between album
    faces need only their vectors and stored statistics, so both vector indexes can do it."""

    min_score: float
    max_faces: int
    weight: float
    threshold: float
    pool: int = EXPANSION_POOL

    @classmethod
    def from_settings(cls, settings: dict | None) -> QueryExpansion | None:
        """From the bundle's manifest entry (which records more than the settings), or None."""
        if not settings:
            return None
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})

    def settings(self) -> dict:
        """The expansion as the bundle's manifest stores it."""
        return asdict(self)

    def confident(self, scores: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Which faces may vote: a normalised score ≥ ``min_score``, and not a copy of the key."""
        return (scores >= self.min_score) & (sims < DUPLICATE_COSINE)

    def candidates(self, scores: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """The key's faces this expansion re-scores (``best_candidates``)."""
        return best_candidates(scores, eligible, self.pool)

    def rescore(
        self,
        sims: np.ndarray,
        scores: np.ndarray,
        passing: np.ndarray,
        pool: np.ndarray,
        pool_vectors: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, passing) with the pool's faces re-scored; ``pool`` from ``candidates``,
        ``pool_vectors`` their unit vectors in that order, ``mean``/``std`` every face's statistics."""
        scores, passing = np.array(scores, np.float64), np.array(passing, bool)
        if not len(pool):
            return scores, passing
        confident = np.nonzero(self.confident(scores[pool], sims[pool]))[0]
        confident = confident[: self.max_faces]
        if not len(confident):
            return scores, passing
        vectors = np.asarray(pool_vectors, np.float32)
        raw = vectors[confident] @ vectors.T
        members = pool[confident]
        votes = as_norm(raw, mean[members][:, None], std[members][:, None], mean[pool][None, :], std[pool][None, :])
        expanded = (scores[pool] + self.weight * votes.sum(axis=0)) / (1 + self.weight * len(confident))
        expanded = np.where(np.isnan(expanded), -np.inf, expanded)
        passing[pool] |= expanded >= self.threshold
        scores[pool] = np.maximum(scores[pool], expanded)
        return scores, passing


@dataclass(frozen=True)
class KeyNormalisation:
    """One search key's side of AS-norm: its cohort statistics, the normalised threshold
    (None: rank by the normalised score, cut by cosine only) and the query expansion, if any."""

    mean: float
    std: float
    threshold: float | None
    expansion: QueryExpansion | None = None

    def scores(self, raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Album faces without statistics (NaN) score -inf: they cannot be compared fairly."""
        scores = as_norm(np.asarray(raw, np.float64), self.mean, self.std, mean, std)
        return np.where(np.isnan(scores), -np.inf, scores)

    def passes(self, scores):
        """Which normalised scores pass the decision (all finite ones without a threshold)."""
        return scores >= self.threshold if self.threshold is not None else np.isfinite(scores)
