"""The seed's verification metrics, on numbers whose answers are known."""

import numpy as np
import pytest

from model_factory import calibration


def test_metrics_at_a_threshold():
    pos = np.array([0.9, 0.8, 0.4])
    neg = np.array([0.1, 0.5, 0.2])
    m = calibration.metrics_at(pos, neg, 0.45)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_threshold_is_the_accuracy_peak_between_the_means():
    pos = np.array([0.7, 0.8, 0.9, 0.95])
    neg = np.array([0.1, 0.2, 0.3, 0.65])
    t = calibration.best_threshold(pos, neg)
    assert 0.65 < t <= 0.7
    assert calibration.metrics_at(pos, neg, t)["accuracy"] == 1.0


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(1)
    pos = rng.integers(0, 10, 50) / 10
    neg = rng.integers(0, 8, 60) / 10
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert calibration.roc_auc(pos, neg) == pytest.approx(wins)
    assert calibration.roc_auc(np.array([1.0]), np.array([0.0])) == 1.0


def test_pairs_are_balanced_and_labelled():
    emb = np.eye(4, dtype=np.float32)
    emb[1] = emb[0]
    pos, neg = calibration.pair_similarities(emb, ["a", "a", "b", "c"])
    assert pos.tolist() == [1.0]
    assert len(neg) == 1 and neg[0] == 0.0
    report = calibration.report(pos, neg)
    assert report["accuracy"] == 1.0 and report["auc"] == 1.0


def test_normalised_search_fit_prefers_the_rule_that_separates_a_crowded_group():
    """Two groups: people of group A sit close to each other (strangers ~0.85), of group B far apart.
    One cosine threshold cannot serve both; the fitted floor + normalised threshold does."""
    rng = np.random.default_rng(3)
    dim, vectors, labels = 32, [], []
    centre = rng.standard_normal(dim)
    for person in range(12):
        crowded = person < 6
        base = (centre * 3 if crowded else 0) + rng.standard_normal(dim)
        for _ in range(4):
            vectors.append(base + rng.standard_normal(dim) * 0.35)
            labels.append(f"p{person}")
    vectors = np.array(vectors) / np.linalg.norm(vectors, axis=1, keepdims=True)
    fitted = calibration.fit_normalised_search(vectors, labels, top_n_choices=(5, 10))
    plain = max(calibration.retrieval_report(vectors, labels, t)["f1"] for t in np.linspace(0.3, 0.99, 70))
    assert fitted["top_n"] in (5, 10) and fitted["f1"] >= plain


def test_normalised_search_fit_on_a_cohort_smaller_than_top_n():
    """A small labelled set: top_n choices beyond a face's strangers in the cohort are skipped."""
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((12, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"p{i // 3}" for i in range(12)]  # 4 people x 3 photos: 9 strangers each
    assert calibration.fit_normalised_search(vectors, labels, top_n_choices=(5, 20, 50))["top_n"] == 5
    assert calibration.fit_normalised_search(vectors, labels, top_n_choices=(20, 50))["top_n"] == 9


def test_query_expansion_is_not_fitted_where_it_cannot_win():
    """Well separated people whose photos the key finds alone (recall 1): every expansion could
    only let strangers in, so the fit must choose none."""
    rng = np.random.default_rng(3)
    common = rng.standard_normal(64)
    vectors, labels = [], []
    for person in range(20):
        centre = rng.standard_normal(64)
        for _ in range(6):
            vectors.append(0.8 * common + centre + 0.3 * rng.standard_normal(64))
            labels.append(f"p{person}")
    vectors = np.asarray(vectors, np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cohort = np.ones(len(vectors), bool)
    fitted = calibration.fit_normalised_search(vectors, labels, cohort, top_n_choices=(5,), raw_grid=(0.0,))
    assert fitted["f1"] == 1.0
    assert calibration.fit_query_expansion(vectors, labels, cohort, 5, 0.0, fitted["threshold"]) is None


def _per_source_f1(vectors, labels, sources, fit):
    """Each source's mean search F1 at a fitted point, recomputed from ``chalicelib.shared.score_norm``."""
    from chalicelib.shared.score_norm import as_norm, cohort_stats

    labels, sources = np.asarray(labels), np.asarray(sources)
    same = labels[:, None] == labels[None, :]
    mean, std = cohort_stats(vectors, vectors, fit["top_n"], exclude=same)
    raw = vectors @ vectors.T
    found = (raw >= fit["raw_floor"]) & (as_norm(raw, mean[:, None], std[:, None], mean, std) >= fit["threshold"])
    np.fill_diagonal(found, False)
    np.fill_diagonal(same, False)
    tp = (found & same).sum(axis=1)
    precision = np.where(found.sum(axis=1) > 0, tp / np.maximum(found.sum(axis=1), 1), 1.0)
    recall = tp / same.sum(axis=1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    return {s: float(f1[sources == s].mean()) for s in sorted(set(sources))}


def test_the_sources_objective_weighs_a_small_source_as_much_as_a_large_one():
    """A large source of tight photos of people close to each other, and a small one of loose photos
    of people far apart: weighing every key the same lets the large source set a strict threshold;
    the ``sources`` objective maximises the mean of the two sources' F1, and the small one gains."""
    rng = np.random.default_rng(5)
    dim, vectors, labels, sources = 32, [], [], []
    centre = rng.standard_normal(dim)
    for person in range(36):
        small = person >= 30
        base = rng.standard_normal(dim) + (0 if small else centre)
        for _ in range(4):
            vectors.append(base + rng.standard_normal(dim) * (1.2 if small else 0.6))
            labels.append(f"p{person}")
            sources.append("small" if small else "large")
    vectors = np.array(vectors) / np.linalg.norm(vectors, axis=1, keepdims=True)
    grid = dict(top_n_choices=(5,), raw_grid=(-1.0,))  # no floor: the normalised threshold decides
    by_key = calibration.fit_normalised_search(vectors, labels, **grid)
    by_source = calibration.fit_normalised_search(vectors, labels, sources=sources, **grid)
    key_scores = _per_source_f1(vectors, labels, sources, by_key)
    source_scores = _per_source_f1(vectors, labels, sources, by_source)
    assert by_source["f1"] == pytest.approx(np.mean(list(source_scores.values())))
    assert np.mean(list(source_scores.values())) > np.mean(list(key_scores.values()))
    assert by_source["threshold"] < by_key["threshold"] and source_scores["small"] > key_scores["small"]
    # One source: the same as weighing every key.
    assert calibration.fit_normalised_search(vectors, labels, sources=["large"] * len(labels), **grid) == by_key


def test_identity_interval_draws_people_not_keys():
    """Keys of one person move together: the interval is as wide as the spread between people,
    however many keys each has, and it is a point where every person scores the same."""
    few = calibration.identity_interval([0.0, 1.0], ["a", "b"])
    many = calibration.identity_interval([0.0] * 50 + [1.0] * 50, ["a"] * 50 + ["b"] * 50)
    assert few == many and few[0] < 0.1 and few[1] > 0.9  # drawn per key, 100 keys would give ~0.4..0.6
    assert calibration.identity_interval([0.7, 0.7, 0.7], ["a", "b", "c"]) == [0.7, 0.7]
    rng = np.random.default_rng(0)
    values = rng.random(400)
    low, high = calibration.identity_interval(values, [f"p{i // 4}" for i in range(400)])
    assert low < values.mean() < high and high - low < 0.15
