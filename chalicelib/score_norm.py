"""Cohort score normalisation (adaptive symmetric normalisation, "AS-norm").

A raw cosine means different things for different faces: the embedder places every
East-Asian face close to every other, so a stranger of an East-Asian key scores ~0.8 while a
stranger of a Western key scores ~0.5, and one global threshold lets strangers in. AS-norm
judges each side against a cohort (embedded faces of many people, none of them the user's):
for key q and album face t with raw score s,

    s' = ½ [(s − μq) / σq + (s − μt) / σt]

where μ, σ are the mean and standard deviation of a face's ``top_n`` highest cohort scores.
μt, σt are computed once per face when it is indexed; μq, σq at search time.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def as_norm(raw: np.ndarray, key_mean: float, key_std: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised scores of one key against album faces (their μ, σ in ``mean``, ``std``)."""
    return 0.5 * ((raw - key_mean) / key_std + (raw - mean) / std)


@dataclass(frozen=True)
class KeyNormalisation:
    """One search key's side of AS-norm: its cohort statistics and the normalised threshold
    (None: rank by the normalised score, cut by cosine only)."""

    mean: float
    std: float
    threshold: float | None

    def scores(self, raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Album faces without statistics (NaN) score -inf: they cannot be compared fairly."""
        scores = as_norm(np.asarray(raw, np.float64), self.mean, self.std, mean, std)
        return np.where(np.isnan(scores), -np.inf, scores)

    def passes(self, scores):
        return scores >= self.threshold if self.threshold is not None else np.isfinite(scores)
