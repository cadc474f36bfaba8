"""The seed's verification metrics, on numbers whose answers are known."""
import numpy as np
import pytest

from gpu_endpoint import calibration


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
