"""Cohort score normalisation: the statistics and the symmetric formula, on vectors with known answers."""

import numpy as np
import pytest

from chalicelib.score_norm import as_norm, cohort_stats


def unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cohort_stats_take_the_top_n_scores():
    cohort = unit([[1, 0], [0, 1], [1, 1], [-1, 0]])
    mean, std = cohort_stats(unit([[1, 0]]), cohort, top_n=2)
    top = np.array([1.0, np.sqrt(0.5)])  # its two best cohort scores
    assert mean[0] == pytest.approx(top.mean(), abs=1e-6) and std[0] == pytest.approx(top.std(), abs=1e-6)


def test_excluded_pairs_are_left_out():
    cohort = unit([[1, 0], [0, 1], [1, 1]])
    exclude = np.array([[True, False, False]])  # the face's own person
    mean, _ = cohort_stats(unit([[1, 0]]), cohort, top_n=1, exclude=exclude)
    assert mean[0] == pytest.approx(np.sqrt(0.5), abs=1e-6)


def test_a_crowded_region_needs_a_higher_raw_score():
    """Two pairs with the same raw cosine: the one whose faces sit among close strangers scores lower."""
    raw = np.array([0.8])
    crowded = as_norm(raw, 0.75, 0.02, np.array([0.75]), np.array([0.02]))
    sparse = as_norm(raw, 0.45, 0.05, np.array([0.45]), np.array([0.05]))
    assert crowded[0] == pytest.approx(2.5) and sparse[0] == pytest.approx(7.0)
    assert crowded[0] < sparse[0]
