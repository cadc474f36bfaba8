"""Grouping faces into people (chalicelib.grouping): the graph, the linkages and every constraint."""

import numpy as np
import pytest

from chalicelib import grouping
from chalicelib.grouping import (
    Constraints,
    GroupingParams,
    agglomerate,
    doubtful_half,
    knn_edges,
    nearest_rows,
    normalised_pair_scores,
    two_halves,
    undirected,
)
from model_factory.calibration import grouping_scores


def people_like(n_people: int, per_person: int, dim: int = 32, spread: float = 0.15, seed: int = 0):
    """Unit vectors around one random centre per person; flat cohort statistics (mean 0, std 0.1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    vectors = np.repeat(centres, per_person, axis=0) + spread * rng.normal(size=(n_people * per_person, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stats = np.tile([0.0, 0.1], (len(vectors), 1))
    identities = np.repeat([f"p{i}" for i in range(n_people)], per_person)
    return vectors.astype(np.float32), stats, identities


def test_pair_scores_are_symmetric_as_norm():
    vectors, stats, _ = people_like(2, 2)
    stats[0] = [0.2, 0.05]
    scores = normalised_pair_scores(vectors, stats, vectors, stats)
    raw = vectors @ vectors.T
    expected = 0.5 * ((raw[0, 1] - 0.2) / 0.05 + (raw[0, 1] - 0.0) / 0.1)
    assert scores[0, 1] == pytest.approx(expected, rel=1e-5) and scores[1, 0] == pytest.approx(expected, rel=1e-5)
    stats[1] = [np.nan, np.nan]  # a face without statistics cannot be compared
    assert np.isneginf(normalised_pair_scores(vectors, stats, vectors, stats)[0, 1])


def brute_force_edges(vectors, stats, k) -> dict:
    """{(i, j): score} of every face's k best neighbours, from the full score matrix."""
    full = normalised_pair_scores(vectors, stats, vectors, stats)
    np.fill_diagonal(full, -np.inf)
    edges = {}
    for i, row in enumerate(full):
        for j in np.argsort(-row)[:k]:
            if np.isfinite(row[j]):
                edges[(min(i, int(j)), max(i, int(j)))] = float(row[j])
    return edges


def test_knn_edges_are_each_faces_k_best_undirected_and_once():
    vectors, stats, _ = people_like(5, 9)
    rng = np.random.default_rng(1)  # each face its own cohort statistics: both sides of the norm count
    stats = np.column_stack([rng.normal(0.0, 0.05, len(vectors)), rng.uniform(0.05, 0.15, len(vectors))])
    stats[7] = [np.nan, np.nan]  # a face without statistics has no edge
    i, j, s = knn_edges(vectors, stats, k=4)
    assert (i < j).all() and len(set(zip(i.tolist(), j.tolist()))) == len(i)
    expected = brute_force_edges(vectors, stats, 4)
    assert set(zip(i.tolist(), j.tolist())) == set(expected) and 7 not in set(i) | set(j)
    assert np.allclose(s, [expected[e] for e in zip(i.tolist(), j.tolist())], rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 13])
def test_rows_and_streamed_column_chunks_find_the_same_edges(chunk, monkeypatch):
    """A fanned-out graph: row blocks, each streaming the columns in chunks, merged = the whole graph."""
    monkeypatch.setattr(grouping, "SEED_COLUMNS", 3)  # seeding and the threshold pass both run
    vectors, stats, _ = people_like(4, 10)
    columns = [(a, vectors[a : a + chunk], stats[a : a + chunk]) for a in range(0, len(vectors), chunk)]
    parts = [nearest_rows(vectors[a : a + 7], stats[a : a + 7], a, columns, 5) for a in range(0, len(vectors), 7)]
    merged = undirected(*(np.concatenate(p) for p in zip(*parts)))
    whole = knn_edges(vectors, stats, 5)
    assert set(zip(merged[0].tolist(), merged[1].tolist())) == set(zip(whole[0].tolist(), whole[1].tolist()))
    assert set(zip(whole[0].tolist(), whole[1].tolist())) == set(brute_force_edges(vectors, stats, 5))


@pytest.mark.parametrize("linkage", ["average", "single"])
def test_separated_people_are_found(linkage):
    vectors, stats, identities = people_like(4, 6)
    photos = [str(i) for i in range(len(vectors))]
    labels = agglomerate(len(vectors), knn_edges(vectors, stats, 10), photos, 7.0, 2, linkage)
    scores = grouping_scores(labels, identities, photos, np.ones(len(labels), bool))
    assert scores["bcubed_precision"] == 1.0 and scores["bcubed_recall"] == 1.0 and scores["people_found"] == 4


def test_two_faces_of_one_photo_are_never_one_person():
    vectors, stats, _ = people_like(1, 6)
    photos = ["a", "a", "b", "c", "d", "e"]  # faces 0 and 1 share a photo
    labels = agglomerate(len(vectors), knn_edges(vectors, stats, 5), photos, -100.0, 1)
    assert labels[0] != labels[1]


def test_min_faces_leaves_small_groups_unassigned():
    vectors, stats, _ = people_like(2, 3)
    vectors = np.vstack([vectors[:3], vectors[3:4]])  # person 1 has one face only
    stats = stats[:4]
    labels = agglomerate(4, knn_edges(vectors, stats, 3), list("abcd"), 4.0, 2)
    assert labels[3] == -1 and len({labels[0], labels[1], labels[2]}) == 1 and labels[0] >= 0


def test_confirmed_faces_decide_and_rejections_hold():
    vectors, stats, _ = people_like(1, 5)
    photos = list("abcde")
    edges = knn_edges(vectors, stats, 4)
    constraints = Constraints(
        confirmed=["P", None, None, "Q", None],  # the user says 0 and 3 are different people
        rejected=[frozenset(), frozenset({"P"}), frozenset(), frozenset(), frozenset()],
    )
    labels = agglomerate(5, edges, photos, -100.0, 1, constraints=constraints)
    assert labels[0] != labels[3]
    assert labels[1] != labels[0]  # rejected from P: never with P's confirmed face
    # A confirmed face is a person even alone, whatever min_faces says.
    alone = agglomerate(5, edges, photos, 100.0, 3, constraints=Constraints(confirmed=["P", None, None, None, None]))
    assert alone[0] >= 0 and (alone[1:] == -1).all()


def test_a_half_taken_out_of_a_person_never_joins_it_again():
    """One person of look-alikes to the graph: a regrouping would make them one again, but the
    faces the user took out of P (rejected from it) never join the faces in P now."""
    vectors, stats, _ = people_like(1, 6)
    photos = list("abcdef")
    edges = knn_edges(vectors, stats, 5)
    out = frozenset({"P"})
    rejected = [frozenset()] * 3 + [out] * 3
    together = agglomerate(6, edges, photos, -100.0, 2, constraints=Constraints(rejected=rejected))
    assert len(set(together.tolist())) == 1  # without the people they are in now, nothing keeps them apart
    current = ["P", "P", "P", "N", "N", None]
    labels = agglomerate(6, edges, photos, -100.0, 2, constraints=Constraints(rejected=rejected, current=current))
    assert set(labels[:3].tolist()).isdisjoint(labels[3:].tolist())
    assert len(set(labels[:3].tolist())) == 1 and len(set(labels[3:].tolist())) == 1


def test_average_linkage_does_not_chain_where_single_does():
    # Two tight groups bridged by a chain of faces each close to the next: single linkage joins
    # everything through the chain; average linkage keeps the groups apart.
    dim = 8
    a, b = np.eye(dim)[0], np.eye(dim)[1]
    steps = [a * (1 - t) + b * t for t in np.linspace(0, 1, 9)]
    vectors = np.array([a] * 4 + steps + [b] * 4, np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    vectors += 0.01 * rng.normal(size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stats = np.tile([0.0, 0.1], (len(vectors), 1))
    photos = [str(i) for i in range(len(vectors))]
    edges = knn_edges(vectors, stats, 4)
    single = agglomerate(len(vectors), edges, photos, 9.0, 1, "single")
    average = agglomerate(len(vectors), edges, photos, 9.0, 1, "average")
    assert single[0] == single[-1]
    assert average[0] != average[-1]


def test_params_from_the_endpoints_answer():
    assert GroupingParams.from_model_info({"grouping": None}) is None
    params = GroupingParams.from_model_info(
        {"grouping": {"linkage": "average", "k": 20, "min_faces": 3, "threshold": 2.5}}
    )
    assert params == GroupingParams("average", 20, 3, 2.5) and GroupingParams(**params.to_json()) == params


def test_fit_grouping_asks_each_fold_for_the_precision_goal():
    from model_factory import calibration

    vectors, _, identities = people_like(12, 5, dim=128, spread=0.1, seed=3)
    fit = calibration.fit_grouping(vectors, identities, np.ones(len(vectors), bool), top_n=20)
    best = fit["best"]
    assert best["worse_fold_precision"] >= calibration.GROUPING_PRECISION_GOAL
    assert best["bcubed_recall"] > 0.9 and set(fit["best_per_linkage"]) == set(calibration.GROUPING_LINKAGES)
    assert len(fit["grid"]) == len(calibration.GROUPING_KS) * 2 * 2 * len(calibration.GROUPING_THRESHOLDS)


def test_a_person_of_two_look_alikes_falls_in_two_halves():
    vectors, stats, identities = people_like(2, 5, spread=0.3, seed=3)
    order = np.random.default_rng(1).permutation(len(vectors))  # the halves are found, not given
    vectors, stats, identities = vectors[order], stats[order], identities[order]
    scores = normalised_pair_scores(vectors, stats, vectors, stats)
    halves = two_halves(scores)
    assert len(set(zip(halves.tolist(), identities.tolist()))) == 2  # each half one identity
    stats[0] = [np.nan, np.nan]  # a face without statistics still falls somewhere
    assert set(two_halves(normalised_pair_scores(vectors, stats, vectors, stats)).tolist()) == {0, 1}


def test_the_half_question_asks_about_the_half_nobody_confirmed():
    vectors, stats, identities = people_like(2, 5, spread=0.3, seed=3)
    vectors, stats, identities = vectors[:8], stats[:8], identities[:8]  # 5 of p0, 3 of p1
    scores = normalised_pair_scores(vectors, stats, vectors, stats)
    nobody, everyone = np.zeros(8, bool), np.ones(8, bool)
    half, face = doubtful_half(scores, nobody, everyone)
    assert set(identities[half]) == {"p1"} and identities[face] == "p1"  # none confirmed: the smaller half
    confirmed = identities == "p1"
    confirmed[5:7] = False
    confirmed[7] = True  # one face of p1 confirmed: the question is about p0's half
    half, face = doubtful_half(scores, confirmed, ~confirmed)
    assert set(identities[half]) == {"p0"} and identities[face] == "p0" and not confirmed[face]
    confirmed[0] = True  # both halves hold a confirmed face: no question
    assert doubtful_half(scores, confirmed, ~confirmed) is None
    assert doubtful_half(scores, nobody, np.zeros(8, bool)) is None  # nothing of it can be asked
    assert doubtful_half(scores[:6, :6], nobody[:6], everyone[:6]) is None  # 5 and 1: a half needs two faces
