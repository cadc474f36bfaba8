"""What the bundle fits on the calibration identities, and the metrics it is judged by.

dlib's output transform (reference mean and anchor); the search, normalisation, expansion and
grouping fits; the verification metrics the seed project used: cosine similarities of positive
(same person) and negative pairs, the threshold at the accuracy peak searched between the two
means, accuracy, precision, recall and F1 at it, ROC AUC. Negatives are sampled to match the
positives in number, so accuracy is not dominated by the easy majority.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1."""
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fit_transform(raw: np.ndarray):
    """dlib's output transform fitted on raw descriptors: the reference mean face and the anchor
    (the RMS distance of a face from it)."""
    mean = raw.mean(axis=0).astype(np.float32)
    anchor = float(np.sqrt(np.mean(np.sum((raw - mean) ** 2, axis=1))))
    return mean, anchor


# Identity names per face: a list, or the array the functions make of it.
Labels = Sequence[str] | np.ndarray


def embed_transform(raw: np.ndarray, mean: np.ndarray, anchor: float) -> np.ndarray:
    """What the calibrated graph computes, in numpy (tests compare the two)."""
    return unit(np.hstack([raw - mean, np.full((len(raw), 1), anchor, np.float32)]))


def pair_similarities(embeddings: np.ndarray, labels: Labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All positive pairs, and as many negative pairs drawn at random (fixed seed)."""
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    sims = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    all_pairs = sims[upper]
    positives = all_pairs[same]
    negatives = all_pairs[~same]
    rng = np.random.default_rng(seed)
    if len(negatives) > len(positives) > 0:
        negatives = rng.choice(negatives, size=len(positives), replace=False)
    return positives, negatives


def metrics_at(positives: np.ndarray, negatives: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and accuracy of same-person pairs at one threshold."""
    tp = int((positives >= threshold).sum())
    fn = len(positives) - tp
    fp = int((negatives >= threshold).sum())
    tn = len(negatives) - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(1, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def best_threshold(positives: np.ndarray, negatives: np.ndarray, steps: int = 2000) -> float:
    """The accuracy peak on a grid between the negative and the positive mean."""
    low, high = float(np.mean(negatives)), float(np.mean(positives))
    grid = np.linspace(min(low, high), max(low, high), steps)
    accuracy = [metrics_at(positives, negatives, t)["accuracy"] for t in grid]
    return float(grid[int(np.argmax(accuracy))])


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive pair scores above a random negative one."""
    scores = np.concatenate([positives, negatives])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average the ranks of ties.
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            ranks[order[start : start + count]] = ranks[order[start : start + count]].mean()
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def report(positives: np.ndarray, negatives: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """Every number of the evaluation; the threshold is searched unless given."""
    threshold = best_threshold(positives, negatives) if threshold is None else threshold
    result = metrics_at(positives, negatives, threshold)
    result.update(
        auc=roc_auc(positives, negatives),
        positive_pairs=len(positives),
        negative_pairs=len(negatives),
        positive_mean=float(np.mean(positives)),
        negative_mean=float(np.mean(negatives)),
    )
    return result


def retrieval_report(embeddings: np.ndarray, labels: Labels, threshold: float, min_photos: int = 3) -> dict[str, float]:
    """Search as the product does it: each photo of an identity with ``min_photos`` or more
    is the key over all the others; mean precision, recall and F1 at ``threshold``, and mAP."""
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    values, counts = np.unique(labels, return_counts=True)
    eligible = set(values[counts >= min_photos])
    precision, recall, f1, aps = [], [], [], []
    for i in range(len(labels)):
        if labels[i] not in eligible:
            continue
        relevant = labels == labels[i]
        relevant[i] = False
        retrieved = sims[i] >= threshold
        tp = int((retrieved & relevant).sum())
        p = tp / retrieved.sum() if retrieved.sum() else 1.0
        r = tp / relevant.sum()
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
        ranked = relevant[np.argsort(-sims[i])][:-1]
        hits = np.cumsum(ranked)
        aps.append(float((hits[ranked] / (np.nonzero(ranked)[0] + 1)).mean()))
    return {
        "threshold": float(threshold),
        "keys": len(precision),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "f1": float(np.mean(f1)),
        "map": float(np.mean(aps)),
    }


BOOTSTRAP_DRAWS = 2000


def identity_interval(values, identities, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> list[float]:
    """95 % interval of the mean of per-key ``values`` when the *identities* are drawn again with
    replacement (all keys of a drawn identity come with it): a slice's keys are not independent,
    its people are. Fed per-key differences of two decision rules, it is a paired interval."""
    values = np.asarray(values, np.float64)
    names, index = np.unique(np.asarray(identities), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(names))
    counts = np.bincount(index, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(names), size=(draws, len(names)))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    return [round(float(v), 4) for v in np.percentile(means, [2.5, 97.5])]


def best_search_threshold(
    embeddings: np.ndarray, labels: Labels, low: float = 0.5, high: float = 0.98, steps: int = 97
) -> float:
    """The threshold with the best mean retrieval F1: an album holds far more other people
    than photos of the key's person, so this sits above the pair-balanced verification one."""
    grid = np.linspace(low, high, steps)
    scores = [retrieval_report(embeddings, labels, t)["f1"] for t in grid]
    return float(grid[int(np.argmax(scores))])


RAW_FLOOR_GRID = tuple(np.linspace(0.6, 0.85, 11))
NORMALISED_GRID = tuple(np.linspace(0.5, 4.0, 15))
MIN_SOURCE_KEYS = 10  # a source with fewer keys is too few to weigh as much as the others


def fit_normalised_search(
    embeddings: np.ndarray,
    labels: Labels,
    cohort_mask=None,
    top_n_choices=(20, 50, 100),
    raw_grid=RAW_FLOOR_GRID,
    norm_grid=NORMALISED_GRID,
    min_photos: int = 3,
    sources: Sequence[str] | None = None,
) -> dict[str, float]:
    """Search with cohort normalisation (``chalicelib.shared.score_norm``), fitted on calibration faces:
    the faces (those in ``cohort_mask``, default all) are the cohort (each face's own person left
    out of it), every face of an
    identity with ``min_photos`` or more is a key over all the others, and a result must pass
    a raw-cosine floor *and* a normalised threshold. Returns the ``top_n``, floor and threshold
    with the best mean retrieval F1 (the floor keeps the precision of faces the cohort judges
    leniently; the normalised threshold cuts the crowded regions, East-Asian faces above all).
    With ``sources`` (each face's), the F1 is averaged per source first, each source with
    ``MIN_SOURCE_KEYS`` keys or more weighing the same (the served fit weighs every key the same,
    so the largest source decides; ``benchmarks.decision_fits`` compares the two)."""
    from chalicelib.shared.score_norm import as_norm, cohort_stats

    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    values, counts = np.unique(labels, return_counts=True)
    keys = np.isin(labels, values[counts >= min_photos])
    cohort_mask = np.ones(len(labels), bool) if cohort_mask is None else np.asarray(cohort_mask, bool)
    raw = embeddings @ embeddings.T
    relevant = same.copy()
    np.fill_diagonal(relevant, False)
    # A small cohort (a small labelled set) cannot give every face its top 50 or 100 strangers.
    strangers = int((~same[:, cohort_mask]).sum(axis=1).min())
    choices = [n for n in top_n_choices if n <= strangers] or [max(1, strangers)]
    if sources is None:
        groups = [np.ones(int(keys.sum()), bool)]
    else:
        key_sources = np.asarray(sources)[keys]
        names, counts = np.unique(key_sources, return_counts=True)
        groups = [key_sources == name for name in names[counts >= MIN_SOURCE_KEYS]]
    best = None
    for top_n in choices:
        mean, std = cohort_stats(embeddings, embeddings[cohort_mask], top_n, exclude=same[:, cohort_mask])
        scores = as_norm(raw, mean[:, None], std[:, None], mean[None, :], std[None, :])
        np.fill_diagonal(scores, -np.inf)
        for floor in raw_grid:
            above_floor = raw[keys] >= floor
            for threshold in norm_grid:
                f1s = _retrieval_scores(above_floor & (scores[keys] >= threshold), relevant[keys], per_key=True)["f1"]
                f1 = float(np.mean([f1s[group].mean() for group in groups]))
                if best is None or f1 > best["f1"]:
                    best = {"top_n": int(top_n), "raw_floor": float(floor), "threshold": float(threshold), "f1": f1}
    assert best is not None, "the grids are never empty"
    return best


EXPANSION_MIN_SCORES = (2.5, 3.0, 3.5)
EXPANSION_MAX_FACES = (5, 10)
EXPANSION_WEIGHTS = (1.0, 2.0)
EXPANSION_THRESHOLDS = tuple(float(t) for t in np.arange(1.0, 3.01, 0.25))
EXPANSION_PRECISION_SLACK = 0.005


def fold_albums(vectors: np.ndarray, identities: np.ndarray, cohort_mask: np.ndarray, top_n: int) -> list:
    """The calibration identities split in two folds, each an album judged against a cohort of the
    other fold's faces (those in ``cohort_mask``), as a user's album is: its people are never in the
    bundle's cohort. With the album's own people in the cohort (even each face's own person left out,
    its look-alikes stay), strangers score too low. Per fold: (members mask, cohort mean, std)."""
    from chalicelib.shared.score_norm import cohort_stats

    names = sorted(set(identities.tolist()))
    fold = np.isin(identities, names[::2])
    albums = []
    for members in (fold, ~fold):
        cohort = vectors[~members & cohort_mask]
        mean, std = cohort_stats(vectors[members], cohort, min(top_n, len(cohort)))
        albums.append((members, mean, std))
    return albums


def fit_query_expansion(
    embeddings: np.ndarray,
    labels: Labels,
    cohort_mask,
    top_n: int,
    raw_floor: float,
    threshold: float,
    min_photos: int = 3,
) -> dict | None:
    """Query expansion (``chalicelib.shared.score_norm.QueryExpansion``) on top of the fitted normalised
    search, on the two ``fold_albums`` (every face of an identity with ``min_photos`` or more a key
    over the rest of its fold): the grid point with the best worse-fold mean F1 among those that
    cost neither fold more than ``EXPANSION_PRECISION_SLACK`` of its precision without expansion
    (expansion trades precision for recall; the product's complaint was strangers in the results),
    if it beats no expansion; else None. Returns the settings and both folds' scores with and without."""
    from chalicelib.shared.score_norm import EXPANSION_POOL, QueryExpansion, as_norm, best_candidates

    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    folds = []
    for members, mean, std in fold_albums(embeddings, labels, np.asarray(cohort_mask, bool), top_n):
        vectors, names = embeddings[members], labels[members]
        values, counts = np.unique(names, return_counts=True)
        keys = np.nonzero(np.isin(names, values[counts >= min_photos]))[0]
        relevant = names[keys][:, None] == names[None, :]
        relevant[np.arange(len(keys)), keys] = False
        searches = []  # per key: what the search without expansion gives (the key is not in its album)
        for key in keys:
            sims = vectors @ vectors[key]
            sims[key] = -1.0
            scores = np.where(sims >= raw_floor, as_norm(sims, mean[key], std[key], mean, std), -np.inf)
            pool = best_candidates(scores, sims >= raw_floor)
            searches.append((sims, scores, scores >= threshold, pool, vectors[pool]))
        folds.append((searches, relevant, mean, std))

    def scored(expansion) -> list[dict]:
        out = []
        for searches, relevant, mean, std in folds:
            retrieved = np.vstack([expansion.rescore(*s, mean, std)[1] if expansion else s[2] for s in searches])
            out.append(_retrieval_scores(retrieved, relevant))
        return out

    without = scored(None)
    best = {"worse_fold_f1": min(f["f1"] for f in without)}  # an expansion must beat none
    for settings in _expansion_grid(threshold):
        folds_scores = scored(QueryExpansion(**settings))
        if any(f["precision"] < w["precision"] - EXPANSION_PRECISION_SLACK for f, w in zip(folds_scores, without)):
            continue
        worse = min(f["f1"] for f in folds_scores)
        if worse > best["worse_fold_f1"]:
            best = dict(settings, pool=EXPANSION_POOL, worse_fold_f1=worse, folds=folds_scores)
    if "min_score" not in best:
        return None
    rounded = [{k: round(v, 4) for k, v in f.items()} for f in best.pop("folds")]
    return dict(
        best,
        worse_fold_f1=round(best["worse_fold_f1"], 4),
        folds=rounded,
        folds_without=[{k: round(v, 4) for k, v in f.items()} for f in without],
    )


def _retrieval_scores(retrieved: np.ndarray, relevant: np.ndarray, per_key: bool = False) -> dict:
    """Mean precision, recall and F1 over the keys (rows); with ``per_key``, each key's."""
    tp = (retrieved & relevant).sum(axis=1)
    found = retrieved.sum(axis=1)
    precision = np.where(found > 0, tp / np.maximum(found, 1), 1.0)
    recall = tp / relevant.sum(axis=1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    scores = (("precision", precision), ("recall", recall), ("f1", f1))
    return {k: v if per_key else float(v.mean()) for k, v in scores}


def _expansion_grid(threshold: float):
    for min_score in EXPANSION_MIN_SCORES:
        if min_score < threshold:  # a confident match must pass on its own
            continue
        for max_faces in EXPANSION_MAX_FACES:
            for weight in EXPANSION_WEIGHTS:
                for expanded in EXPANSION_THRESHOLDS:
                    yield {"min_score": min_score, "max_faces": max_faces, "weight": weight, "threshold": expanded}


# People grouping (chalicelib.grouping), fitted on the calibration identities ------------------
GROUPING_LINKAGES = ("average", "single")
GROUPING_KS = (10, 20, 40)
GROUPING_MIN_FACES = (2, 3)
GROUPING_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(1.0, 7.01, 0.1), 2))
GROUPING_PRECISION_GOAL = 0.95


def grouping_scores(labels: np.ndarray, identities: np.ndarray, photos: Sequence[str], mask: np.ndarray) -> dict:
    """BCubed and pairwise precision/recall of a grouping over the labelled faces in ``mask``
    (``identities`` '' for unlabelled faces). An unassigned face (label -1) is a person of its own;
    an unlabelled face in a face's person counts against its precision."""
    n = len(labels)
    person = np.where(labels >= 0, labels, -1 - np.arange(n))
    items = np.nonzero(np.asarray(mask) & (identities != ""))[0]
    members = {int(p): np.nonzero(person == p)[0] for p in np.unique(person)}
    labelled = identities[identities != ""]
    identity_size = {i: int(c) for i, c in zip(*np.unique(labelled, return_counts=True))}
    precision, recall = [], []
    same_person = same_identity = true_pairs = 0
    for i in items:
        group = members[int(person[i])]
        correct = int((identities[group] == identities[i]).sum())
        precision.append(correct / len(group))
        recall.append(correct / identity_size[identities[i]])
        same_person += len(group) - 1
        same_identity += correct - 1
        true_pairs += identity_size[identities[i]] - 1
    bp = float(np.mean(precision)) if precision else 0.0
    br = float(np.mean(recall)) if recall else 0.0
    return {
        "faces": len(items),
        "identities": len(set(identities[items])),
        "people_found": len({int(labels[i]) for i in items if labels[i] >= 0}),
        "unassigned": int((labels[items] < 0).sum()),
        "bcubed_precision": round(bp, 4),
        "bcubed_recall": round(br, 4),
        "bcubed_f1": round(2 * bp * br / (bp + br), 4) if bp + br else 0.0,
        "pairwise_precision": round(same_identity / same_person, 4) if same_person else 1.0,
        "pairwise_recall": round(same_identity / true_pairs, 4) if true_pairs else 1.0,
        "people_with_two_faces_of_one_photo": sum(
            1 for p, group in members.items() if p >= 0 and len({photos[f] for f in group}) < len(group)
        ),
    }


def fit_grouping(vectors: np.ndarray, identities: Labels, cohort_mask, top_n: int) -> dict:
    """The grouping parameters with the best BCubed recall while *each* fold keeps BCubed precision ≥
    the goal (the best F1 when none does), over a grid, on calibration faces. As in a user's album,
    whose people are never in the bundle's cohort, the identities are split in two folds: each fold is
    an album judged against a cohort of the other fold's faces (``cohort_mask`` of them). With the
    album's own look-alikes in the cohort, strangers would score too low and the fit would merge too
    eagerly; asking the precision of the worse fold, not of both pooled, leaves a margin for albums
    unlike either. Returns the best grid point (scores over both folds, and the worse fold's
    precision), the best of each linkage, and the whole grid."""
    from chalicelib.grouping import agglomerate, knn_edges

    vectors = np.asarray(vectors, np.float32)
    identities = np.asarray(identities)
    cohort_mask = np.asarray(cohort_mask, bool)
    albums = [
        (vectors[members], np.stack([mean, std], axis=1), identities[members])
        for members, mean, std in fold_albums(vectors, identities, cohort_mask, top_n)
    ]
    truth = np.concatenate([album[2] for album in albums])
    photos = [str(i) for i in range(len(truth))]
    grid = []
    for k in GROUPING_KS:
        edges = [knn_edges(v, st, k) for v, st, _ in albums]
        for linkage in GROUPING_LINKAGES:
            for min_faces in GROUPING_MIN_FACES:
                for threshold in GROUPING_THRESHOLDS:
                    parts, offset, worst = [], 0, 1.0
                    for (v, _, names_), e in zip(albums, edges):
                        labels = agglomerate(len(v), e, photos[: len(v)], threshold, min_faces, linkage)
                        one = grouping_scores(labels, names_, photos[: len(v)], np.ones(len(v), bool))
                        worst = min(worst, one["bcubed_precision"])
                        parts.append(np.where(labels >= 0, labels + offset, -1))
                        offset += len(v)
                    scores = grouping_scores(np.concatenate(parts), truth, photos, np.ones(len(truth), bool))
                    grid.append(
                        {
                            "linkage": linkage,
                            "k": k,
                            "min_faces": min_faces,
                            "threshold": threshold,
                            "worse_fold_precision": worst,
                            **scores,
                        }
                    )
    per_linkage = {
        linkage: _best_grouping([r for r in grid if r["linkage"] == linkage]) for linkage in GROUPING_LINKAGES
    }
    return {"best": _best_grouping(grid), "best_per_linkage": per_linkage, "grid": grid}


def _best_grouping(rows: list[dict]) -> dict:
    reaching = [r for r in rows if r["worse_fold_precision"] >= GROUPING_PRECISION_GOAL]
    if reaching:
        return max(reaching, key=lambda r: (r["bcubed_recall"], r["bcubed_f1"]))
    return max(rows, key=lambda r: r["bcubed_f1"])
