"""Faces into people: the nearest-neighbour graph and constrained agglomeration (pure numpy).

Two faces are compared by their cohort-normalised score (``score_norm``: each side judged
against the bundle's cohort, so East-Asian faces, which the embedder places close together, are
not merged at a Western face's cosine). The graph keeps each face's ``k`` best neighbours,
computed block by block, so memory grows with n·k, not n²; the columns may come in chunks (a worker
of a fanned-out graph streams them), only scores above a row's k-th best so far are looked at.

Agglomeration merges the two groups with the best link first, as long as that link reaches
the threshold, and never merges across a constraint:
- cannot-link: two faces of one photo are never one person;
- a group holding faces the user confirmed for person P never merges with one confirmed for Q;
- a face the user rejected from P never joins P's confirmed faces, nor (when the faces' current
  people are given) any face in P now: a half the user took out of P stays out.
``linkage="average"``: a link is the sum of the graph's edge scores between the two groups over
the number of edges expected between them were they one person, min(|A|·|B|, d·|A|·|B|/(|A|+|B|))
with d the graph's mean degree
(or over the edges found, when more): one strong edge bridging two groups through a chain of
look-alikes is not enough, as it would be with the mean of the edges found;
``"single"``: their best edge. A group needs ``min_faces`` faces (or a confirmed face) to
become a person (Immich's minFaces); the rest stay unassigned (-1).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from chalicelib.records import ModelInfo
from chalicelib.shared.score_norm import MIN_STD


def score_sides(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric AS-norm split by side: per face (u, w) with score(a, b) = cos(a, b)·(u_a + u_b)
    + w_a + w_b, u = 0.5/std, w = -0.5·mean/std; a face without statistics (NaN) gets u 0, w -inf."""
    stats = np.asarray(stats, np.float64).reshape(-1, 2)
    missing = np.isnan(stats).any(axis=1)
    std = np.maximum(np.where(missing, 1.0, stats[:, 1]), MIN_STD)
    u = np.where(missing, 0.0, 0.5 / std)
    w = np.where(missing, -np.inf, -0.5 * np.where(missing, 0.0, stats[:, 0]) / std)
    return u.astype(np.float32), w.astype(np.float32)


def normalised_pair_scores(a: np.ndarray, a_stats: np.ndarray, b: np.ndarray, b_stats: np.ndarray) -> np.ndarray:
    """Symmetric AS-norm scores of every face of ``a`` against every face of ``b``; stats are
    (n, 2) arrays of cohort (mean, std). A face without statistics scores -inf."""
    (ua, wa), (ub, wb) = score_sides(a_stats), score_sides(b_stats)
    raw = np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
    return raw * (ua[:, None] + ub[None, :]) + (wa[:, None] + wb[None, :])


SCORES_PER_BLOCK = 50_000_000  # scores held at once (200 MB of float32, twice): memory stays flat
SEED_COLUMNS = 8192  # a row's first k come from this many columns; the rest only where they beat its k-th


def nearest_rows(
    rows: np.ndarray, row_stats: np.ndarray, row_start: int, columns: Iterable[tuple], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best neighbours of faces ``row_start…`` among the faces of ``columns`` (chunks of
    (first index, vectors, stats), streamed), a face never its own: directed edges (i, j, score),
    up to k a row. A worker of a fanned-out graph runs this over its rows; ``knn_edges`` over all."""
    rows = np.asarray(rows, np.float32)
    m = len(rows)
    row_u, row_w = score_sides(row_stats)
    best_j = np.full((m, k), -1, np.int64)
    best_s = np.full((m, k), -np.inf, np.float32)
    for col_start, vectors, stats in columns:
        vectors = np.asarray(vectors, np.float32)
        col_u, col_w = score_sides(stats)
        width = len(vectors)
        block = max(1, min(m, SCORES_PER_BLOCK // max(1, width)))
        scores, scratch = np.empty((block, width), np.float32), np.empty((block, width), np.float32)
        for a in range(0, m, block):
            b = min(m, a + block)
            s, t = scores[: b - a], scratch[: b - a]
            np.matmul(rows[a:b], vectors.T, out=s)
            np.multiply(s, col_u, out=t)  # cos·(u_row + u_col) + w_col, in place; w_row added last
            s *= row_u[a:b, None]
            s += t
            s += col_w
            own = np.arange(row_start + a, row_start + b)
            inside = (own >= col_start) & (own < col_start + width)
            s[np.nonzero(inside)[0], own[inside] - col_start] = -np.inf
            best_j[a:b], best_s[a:b] = _merge_best(s, col_start, best_j[a:b], best_s[a:b])
    keep = best_j >= 0
    scores = best_s + row_w[:, None]
    keep &= np.isfinite(scores)
    return np.nonzero(keep)[0] + row_start, best_j[keep], scores[keep]


def _merge_best(s: np.ndarray, col_start: int, best_j: np.ndarray, best_s: np.ndarray) -> tuple:
    """Rows' k best so far merged with the scores ``s`` of columns ``col_start…``: the k best of
    both. Only scores above a row's k-th best are looked at, so most of ``s`` is read once."""
    m, k = best_j.shape
    seed = 0
    if not np.isfinite(best_s).any():  # the first chunk: the first SEED_COLUMNS columns give the k-th
        seed = min(s.shape[1], SEED_COLUMNS)
        kk = min(k, seed)
        top = np.argpartition(s[:, :seed], seed - kk, axis=1)[:, seed - kk :]
        best_s = np.full((m, k), -np.inf, np.float32)
        best_j = np.full((m, k), -1, np.int64)
        best_s[:, :kk] = np.take_along_axis(s[:, :seed], top, axis=1)
        best_j[:, :kk] = top + col_start
    kth = best_s.min(axis=1)
    r, c = np.nonzero(s[:, seed:] > kth[:, None])
    if not len(r):
        return best_j, best_s
    c = c + seed
    rows = np.concatenate([np.repeat(np.arange(m), k), r])
    cols = np.concatenate([best_j.ravel(), c + col_start])
    vals = np.concatenate([best_s.ravel(), s[r, c]])
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.searchsorted(rows, np.arange(m))
    take = first[:, None] + np.arange(k)  # every row holds at least its k old entries
    return cols[take], vals[take]


def undirected(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Directed nearest-neighbour edges as undirected ones (i < j, score), each pair once."""
    keep = np.isfinite(s)
    i, j, s = np.minimum(i, j)[keep], np.maximum(i, j)[keep], s[keep]
    order = np.lexsort((-s, j, i))
    i, j, s = i[order], j[order], s[order]
    first = np.ones(len(i), bool)
    first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    return i[first], j[first], s[first]


def knn_edges(vectors: np.ndarray, stats: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Each face's ``k`` best neighbours (not itself): undirected edges (i < j, score), each once."""
    vectors = np.asarray(vectors, np.float32)
    k = min(k, len(vectors) - 1)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return undirected(*nearest_rows(vectors, stats, 0, [(0, vectors, stats)], k))


@dataclass
class _Group:
    faces: list
    photos: set
    person: str | None = None  # the person whose confirmed faces it holds
    rejects: set = field(default_factory=set)  # persons some face of it was rejected from
    now_in: set = field(default_factory=set)  # the people its faces are in now


@dataclass(frozen=True)
class Constraints:
    """What the user said, per face index: confirmed person (or None), rejected persons; and the
    person each face is in now (or None), which a face rejected from that person never joins."""

    confirmed: Sequence[str | None] | None = None
    rejected: Sequence[frozenset] | None = None
    current: Sequence[str | None] | None = None


def agglomerate(
    n: int,
    edges: tuple[np.ndarray, ...],
    photos: Sequence[str],
    threshold: float,
    min_faces: int,
    linkage: str = "average",
    constraints: Constraints | None = None,
) -> np.ndarray:
    """Group labels 0..m-1 per face, -1 for faces left unassigned (see the module's docstring)."""
    if linkage not in ("average", "single"):
        raise ValueError(f"unknown linkage {linkage!r}")
    confirmed = (constraints.confirmed if constraints and constraints.confirmed is not None else None) or [None] * n
    rejected = (constraints.rejected if constraints and constraints.rejected is not None else None) or [frozenset()] * n
    people_now = (constraints.current if constraints and constraints.current is not None else None) or [None] * n
    groups: dict[int, _Group] = {}
    owner = list(range(n))  # face -> group id (kept current for live faces)
    for f in range(n):
        now_in = {p for p in (people_now[f], confirmed[f]) if p is not None}
        groups[f] = _Group([f], {photos[f]}, confirmed[f], set(rejected[f]), now_in)
    # A user's confirmed faces of one person start as one group.
    by_person: dict[str, int] = {}
    for f in range(n):
        person = confirmed[f]
        if person is None:
            continue
        if person in by_person:
            _absorb(groups, owner, by_person[person], f, {}, allow_shared_photo=True)
        else:
            by_person[person] = f
    links: dict[int, dict[int, list]] = {g: {} for g in groups}
    i, j, s = edges
    for a, b, score in zip(i.tolist(), j.tolist(), s.tolist()):
        ga, gb = owner[a], owner[b]
        if ga == gb:
            continue
        entry = links[ga].setdefault(gb, [0.0, 0, -np.inf])
        entry[0] += score
        entry[1] += 1
        entry[2] = max(entry[2], score)
        links[gb][ga] = entry
    degree = max(1.0, 2 * len(i) / max(1, n))  # the graph's mean degree: between k and 2k

    def link(ga: int, gb: int, entry: list) -> float:
        if linkage == "single":
            return entry[2]
        a, b = len(groups[ga].faces), len(groups[gb].faces)
        expected = min(a * b, degree * a * b / (a + b))
        return entry[0] / max(entry[1], expected)

    heap = []
    for ga, neighbours in links.items():
        for gb, entry in neighbours.items():
            if ga < gb:
                heap.append((-link(ga, gb, entry), ga, gb, entry[1]))
    heapq.heapify(heap)
    while heap:
        negative, ga, gb, count = heapq.heappop(heap)
        if -negative < threshold:
            break
        if ga not in groups or gb not in groups:
            continue
        queued = links[ga].get(gb)
        if queued is None:
            continue
        current = link(ga, gb, queued)
        if current < -negative - 1e-9:
            # A side grew since this was queued (without new edges here): queue what it is now.
            heapq.heappush(heap, (-current, ga, gb, queued[1]))
            continue
        if queued[1] != count:
            continue  # a newer entry with more edges is queued
        if not _compatible(groups[ga], groups[gb]):
            continue
        keep, gone = (ga, gb) if len(groups[ga].faces) >= len(groups[gb].faces) else (gb, ga)
        _absorb(groups, owner, keep, gone, links, allow_shared_photo=False)
        for other, merged in links[keep].items():
            heapq.heappush(heap, (-link(keep, other, merged), min(keep, other), max(keep, other), merged[1]))
    labels = np.full(n, -1, np.int64)
    label = 0
    for group in sorted(groups.values(), key=lambda g: min(g.faces)):
        if len(group.faces) >= min_faces or group.person is not None:
            labels[group.faces] = label
            label += 1
    return labels


def _compatible(a: _Group, b: _Group) -> bool:
    if a.photos & b.photos:
        return False
    if a.person is not None and b.person is not None and a.person != b.person:
        return False
    return not (a.rejects & b.now_in or b.rejects & a.now_in)


def _absorb(groups: dict, owner: list, keep: int, gone: int, links: dict, allow_shared_photo: bool) -> None:
    """Move group ``gone`` into ``keep``, summing their links to every third group."""
    a, b = groups[keep], groups.pop(gone)
    if not allow_shared_photo:
        assert not (a.photos & b.photos)
    a.faces.extend(b.faces)
    a.photos |= b.photos
    a.rejects |= b.rejects
    a.now_in |= b.now_in
    a.person = a.person or b.person
    for f in b.faces:
        owner[f] = keep
    if not links:
        return
    links[keep].pop(gone, None)
    for other, entry in links.pop(gone).items():
        if other == keep:
            continue
        del links[other][gone]
        mine = links[keep].get(other)
        if mine is None:
            merged = list(entry)
        else:
            merged = [mine[0] + entry[0], mine[1] + entry[1], max(mine[2], entry[2])]
        links[keep][other] = merged
        links[other][keep] = merged


MIN_HALF = 2  # each half of a person a half question asks about holds at least this many faces


def two_halves(scores: np.ndarray) -> np.ndarray:
    """A person's faces in two groups (0/1 per face): average linkage over their pair scores
    (``scores``, square; non-finite where a face has no statistics), merged until two are left."""
    n = len(scores)
    if n < 2:
        return np.zeros(n, np.int64)
    finite = np.isfinite(scores)
    low = float(scores[finite].min()) - 1.0 if finite.any() else 0.0
    link = np.where(finite, scores, low).astype(np.float64)
    np.fill_diagonal(link, -np.inf)
    size = np.ones(n)
    label = np.arange(n)
    for _ in range(n - 2):
        a, b = divmod(int(np.argmax(link)), n)
        merged = (size[a] * link[a] + size[b] * link[b]) / (size[a] + size[b])
        link[a], link[:, a] = merged, merged
        link[b], link[:, b] = -np.inf, -np.inf
        link[a, a] = -np.inf
        size[a] += size[b]
        label[label == b] = a
    return (label != label[0]).astype(np.int64)


def doubtful_half(scores: np.ndarray, confirmed: np.ndarray, askable: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The half question of a person: its faces' ``two_halves``, the half the user has confirmed
    no face of (the smaller when neither), and the face that stands for it best (the highest sum
    of scores to its half, among ``askable`` faces) as (the half's mask, that face's index); None
    when both halves hold a confirmed face, a half has fewer than ``MIN_HALF`` faces, or no face
    of the half can be asked. A family album's worst grouping error is two look-alikes made one
    person; one answer about the half that is not the person's takes all of it out."""
    if len(scores) < 2 * MIN_HALF:
        return None
    scores = np.array(scores, np.float64)
    np.fill_diagonal(scores, -np.inf)  # a face against itself says nothing
    halves = two_halves(scores)
    sides = [halves == h for h in (0, 1)]
    if min(int(side.sum()) for side in sides) < MIN_HALF:
        return None
    holds = [bool(confirmed[side].any()) for side in sides]
    if all(holds):
        return None
    half = sides[holds.index(True) ^ 1] if any(holds) else min(sides, key=lambda side: int(side.sum()))
    choices = np.nonzero(half & askable)[0]
    if not len(choices):
        return None
    within = scores[np.ix_(choices, np.nonzero(half)[0])]
    within = np.where(np.isfinite(within), within, 0.0)
    return half, int(choices[int(np.argmax(within.sum(axis=1)))])


@dataclass(frozen=True)
class GroupingParams:
    """The bundle's grouping calibration (fitted on its calibration identities): the linkage, the
    neighbours per face ``k``, the normalised-score ``threshold`` a link needs, and ``min_faces``."""

    linkage: str
    k: int
    min_faces: int
    threshold: float

    @classmethod
    def from_model_info(cls, info: ModelInfo | None) -> GroupingParams | None:
        """None for a bundle built before grouping was calibrated."""
        grouping = (info or {}).get("grouping")
        if not grouping:
            return None
        return cls(
            str(grouping["linkage"]), int(grouping["k"]), int(grouping["min_faces"]), float(grouping["threshold"])
        )

    def to_json(self) -> dict:
        """The parameters as the bundle's manifest stores them."""
        return {"linkage": self.linkage, "k": self.k, "min_faces": self.min_faces, "threshold": self.threshold}
