"""An exact pre-filter for cosine search over many faces: a low-rank upper bound.

With P an orthonormal basis of r directions (the principal axes of the user's own vectors), every
unit vector splits into its projection and a residual, and for a key q and a face t

    q·t = (Pq)·(Pt) + q⊥·t⊥ ≤ (Pq)·(Pt) + ‖q⊥‖ ‖t⊥‖        (Cauchy–Schwarz)

so a face whose bound is below the search's cosine floor cannot pass it. Scanning the r-column
projections reads r/d of the matrix; only the faces the bound keeps are scored exactly. Nothing is
approximated: every face with cosine ≥ the floor is kept (a small margin covers float32 rounding).
How much it saves depends on how concentrated the vectors are (face embeddings are: a few hundred
directions hold most of their energy) and on how many faces pass the floor. The bounds also bound
each face's normalised score (it grows with the cosine), which lets search score exactly only the
faces that could pass (``chalicelib.stores.vector_index``); that is what prunes a search without a cosine
floor (people grouping's k nearest neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCKS = (128, 128)  # the basis's columns in blocks: the first scanned for all, the next for what is left
SAMPLE = 20_000  # faces the principal axes are fitted on
MARGIN = 1e-4  # float32 rounding of the bound and of the exact cosine, with room to spare


@dataclass(frozen=True)
class LowRankBound:
    """The first block's bound is computed for every face; each further block tightens it (more of
    the key is projected, less is left to the residual) for the faces still in, and so on."""

    basis: np.ndarray  # (d, r), orthonormal columns, r = sum(blocks)
    blocks: tuple[int, ...]
    projections: tuple[np.ndarray, ...]  # per block (n, block): each face's coordinates on it
    residuals: tuple[np.ndarray, ...]  # per block (n,): the norm of what the blocks so far leave of each face

    @classmethod
    def fit(
        cls, matrix: np.ndarray, blocks: tuple[int, ...] = BLOCKS, sample: int = SAMPLE, seed: int = 0
    ) -> LowRankBound:
        """Principal axes of (a sample of) the rows of ``matrix``, and every row's projections."""
        sizes, room = [], matrix.shape[1]  # no more columns than the vectors have
        for size in blocks:
            if min(size, room) > 0:
                sizes.append(min(size, room))
                room -= sizes[-1]
        blocks = tuple(sizes)
        rows = matrix
        if len(matrix) > sample:
            rows = matrix[np.sort(np.random.default_rng(seed).choice(len(matrix), sample, replace=False))]
        _, axes = np.linalg.eigh(rows.T @ rows)
        basis = np.ascontiguousarray(axes[:, ::-1][:, : sum(blocks)], dtype=np.float32)
        left = np.einsum("ij,ij->i", matrix, matrix)  # not assumed to be 1: the bound holds for any rows
        projections, residuals, start = [], [], 0
        for size in blocks:
            part = matrix @ basis[:, start : start + size]
            left = left - np.einsum("ij,ij->i", part, part)
            projections.append(part)
            residuals.append(np.sqrt(np.maximum(left, 0.0)).astype(np.float32))
            start += size
        return cls(basis, tuple(blocks), tuple(projections), tuple(residuals))

    def candidates(self, query: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices (ascending) of the rows whose dot product with ``query`` may be ≥ ``floor``, and
        for each an upper bound of that dot product."""
        coords = query @ self.basis
        left = float(query @ query)
        starts = np.cumsum((0,) + self.blocks)

        def key_residual(i: int) -> float:  # the norm of what blocks 0..i leave of the key
            return float(np.sqrt(max(left - float(coords[: starts[i + 1]] @ coords[: starts[i + 1]]), 0.0)))

        partial = self.projections[0] @ coords[: starts[1]]
        bound = partial + key_residual(0) * self.residuals[0]
        kept = np.nonzero(bound >= floor - MARGIN)[0]
        partial, bound = partial[kept], bound[kept]
        for i in range(1, len(self.blocks)):
            block, part = coords[starts[i] : starts[i + 1]], self.projections[i]
            partial = partial + (part @ block if len(kept) == len(part) else gathered_dot(part, kept, block))
            bound = partial + key_residual(i) * self.residuals[i][kept]
            inside = bound >= floor - MARGIN
            kept, partial, bound = kept[inside], partial[inside], bound[inside]
        return kept, bound + MARGIN

    @property
    def nbytes(self) -> int:
        """The memory the bound holds."""
        return self.basis.nbytes + sum(p.nbytes + r.nbytes for p, r in zip(self.projections, self.residuals))


def gathered_dot(matrix: np.ndarray, rows: np.ndarray, query: np.ndarray, block: int = 512) -> np.ndarray:
    """``matrix[rows] @ query`` a block of rows at a time: each gathered block stays in cache."""
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), block):
        np.matmul(matrix[rows[start : start + block]], query, out=out[start : start + block])
    return out
