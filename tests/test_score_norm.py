"""Cohort score normalisation: the statistics and the symmetric formula, on vectors with known answers."""

import numpy as np
import pytest

from chalicelib.shared.score_norm import QueryExpansion, as_norm, cohort_stats


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


# Query expansion ----------------------------------------------------------------------------
# Four directions: the key q, two photos r1, r2 of its person close to it, another photo t of the
# person that q alone scores too low but r1 and r2 score high, and a stranger u exactly as close to q
# as t is but far from r1 and r2. Uniform statistics (μ 0, σ 0.1) make every score 10 × cosine.
KEY = unit([[1, 0, 0, 0]])[0]
ALBUM = unit([[1, 0.3, 0, 0], [1, 0.3, 0.05, 0], [1, 0.9, 0, 0], [1, 0, 0.9, 0]])  # r1, r2, t, u
EXPANSION = QueryExpansion(min_score=9.0, max_faces=10, weight=1.0, threshold=8.0)


def search(album, expansion=EXPANSION, threshold=8.0, floor=0.5):
    sims = album @ KEY
    mean, std = np.zeros(len(album)), np.full(len(album), 0.1)
    scores = np.where(sims >= floor, as_norm(sims, 0.0, 0.1, mean, std), -np.inf)
    pool = expansion.candidates(scores, sims >= floor)
    return expansion.rescore(sims, scores, scores >= threshold, pool, album[pool], mean, std)


def test_expansion_finds_the_persons_other_photo_and_not_the_equally_close_stranger():
    sims = ALBUM @ KEY
    assert sims[2] == pytest.approx(sims[3]) and 10 * sims[2] < 8.0  # alone, q finds neither t nor u
    scores, passing = search(ALBUM)
    assert passing.tolist() == [True, True, True, False]
    assert scores[2] > 8.0 > scores[3]
    assert list(np.argsort(-scores)[:3]) in ([0, 1, 2], [1, 0, 2])


def test_without_a_confident_match_nothing_changes():
    scores, passing = search(ALBUM, QueryExpansion(min_score=9.9, max_faces=10, weight=1.0, threshold=8.0))
    assert passing.tolist() == [True, True, False, False]
    assert scores == pytest.approx(10 * (ALBUM @ KEY), abs=1e-5)


def test_a_copy_of_the_key_is_no_vote():
    album = np.vstack([KEY[None, :], ALBUM[2:]])  # the key itself, t, u
    scores, passing = search(album)
    assert passing.tolist() == [True, False, False]
    assert scores == pytest.approx(10 * (album @ KEY), abs=1e-5)


def test_only_the_pool_is_rescored_and_faces_below_the_floor_stay_out():
    scores, passing = search(ALBUM, QueryExpansion(9.0, 10, 1.0, 8.0, pool=2))  # r1 and r2 only
    assert passing.tolist() == [True, True, False, False]
    _, passing = search(ALBUM, floor=0.8)  # t and u are below the raw floor: never candidates
    assert passing.tolist() == [True, True, False, False]


def test_settings_round_trip_and_none_means_no_expansion():
    assert QueryExpansion.from_settings(EXPANSION.settings()) == EXPANSION
    assert QueryExpansion.from_settings(None) is None
