"""An exact pre-filter for cosine search over many faces: a low-rank upper bound.

With P an orthonormal basis of r directions (the principal axes of the user's own vectors), every
unit vector splits into its projection and a residual, and for a key q and a face t

    q·t = (Pq)·(Pt) + q⊥·t⊥ ≤ (Pq)·(Pt) + ‖q⊥‖ ‖t⊥‖        (Cauchy–Schwarz)

so a face whose bound is below the search's cosine floor cannot pass it. Scanning the r-column
projections reads r/d of the matrix; only the faces the bound keeps are scored exactly. Nothing is
approximated: every face with cosine ≥ the floor is kept (a small margin covers float32 rounding).
How much it saves depends on how concentrated the vectors are (face embeddings are: a few hundred
directions hold most of their energy) and on how many faces pass the floor; with a floor it cannot
use (people grouping's k nearest neighbours) search scans everything, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANK = 256
SAMPLE = 20_000  # faces the principal axes are fitted on
MARGIN = 1e-4  # float32 rounding of the bound and of the exact cosine, with room to spare


@dataclass(frozen=True)
class LowRankBound:
    basis: np.ndarray  # (d, r), orthonormal columns
    projections: np.ndarray  # (n, r): each face's coordinates on the basis
    residuals: np.ndarray  # (n,): the norm of what the basis leaves of each face

    @classmethod
    def fit(cls, matrix: np.ndarray, rank: int = RANK, sample: int = SAMPLE, seed: int = 0) -> LowRankBound:
        """Principal axes of (a sample of) the unit rows of ``matrix``, and every row's projection."""
        rows = matrix
        if len(matrix) > sample:
            rows = matrix[np.sort(np.random.default_rng(seed).choice(len(matrix), sample, replace=False))]
        _, axes = np.linalg.eigh(rows.T @ rows)
        basis = np.ascontiguousarray(axes[:, ::-1][:, :rank], dtype=np.float32)
        projections = matrix @ basis
        norms = np.einsum("ij,ij->i", matrix, matrix)  # not assumed to be 1: the bound holds for any rows
        residuals = np.sqrt(np.maximum(norms - np.einsum("ij,ij->i", projections, projections), 0.0))
        return cls(basis, projections, residuals.astype(np.float32))

    def candidates(self, query: np.ndarray, floor: float) -> np.ndarray:
        """Indices (ascending) of the rows whose dot product with ``query`` may be ≥ ``floor``."""
        coords = query @ self.basis
        residual = float(np.sqrt(max(float(query @ query) - float(coords @ coords), 0.0)))
        bound = self.projections @ coords
        bound += residual * self.residuals
        return np.nonzero(bound >= floor - MARGIN)[0]

    @property
    def nbytes(self) -> int:
        return self.basis.nbytes + self.projections.nbytes + self.residuals.nbytes
