"""The two search engines: the exact scan against brute force, and the Atlas pipeline's shape."""

import numpy as np
import pytest

from chalicelib.face_search import MAX_HITS
from chalicelib.settings import Settings
from chalicelib.stores.mongo_connection import open_database
from chalicelib.stores.photo_store import (
    ATLAS_INDEX_NAME,
    ATLAS_MAX_CANDIDATES,
    PhotoStore,
    atlas_pipeline,
    binary_to_vector,
)
from chalicelib.stores.vector_index import AtlasIndex, ExactIndex
from tests.conftest import stored_face


@pytest.fixture
def photo_store():
    s = PhotoStore(open_database(Settings(store_backend="memory")))
    s.ensure_indexes()
    return s


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def add_faces(photo_store, owner, vectors, version="v1", first=0):
    for i, vector in enumerate(vectors, start=first):
        photo_id = f"{i:032x}"
        photo_store.add_photos(
            [
                {
                    "owner": owner,
                    "photo_id": photo_id,
                    "key": f"photos/{owner}/{photo_id}.jpg",
                    "status": "indexed",
                    "uploaded_at": None,
                }
            ]
        )
        photo_store.replace_faces(
            owner,
            photo_id,
            [stored_face(photo_id, vector=vector, version=version)],
        )


def test_exact_search_equals_brute_force_and_respects_owner_and_version(photo_store):
    rng = np.random.default_rng(0)
    mine, theirs = unit(rng.standard_normal((200, 16))), unit(rng.standard_normal((50, 16)))
    add_faces(photo_store, "me", mine)
    add_faces(photo_store, "them", theirs)
    add_faces(photo_store, "me", unit(rng.standard_normal((5, 16))), version="v0", first=1000)
    engine = ExactIndex(photo_store)
    query = mine[17]
    hits = engine.nearest("me", "v1", query, limit=10, threshold=-1.0)
    expected = np.argsort(-(mine @ query))[:10]
    assert [h[1] for h in hits] == [f"{i:032x}" for i in expected]
    assert hits[0][2] == pytest.approx(1.0, abs=1e-6)
    assert all(h[2] >= 0.3 for h in engine.nearest("me", "v1", query, limit=200, threshold=0.3))
    assert engine.nearest("nobody", "v1", query, 10, -1.0) == []
    assert engine.nearest("me", "v2", query, 10, -1.0) == []


def test_exact_search_reloads_only_after_a_change(photo_store):
    rng = np.random.default_rng(1)
    add_faces(photo_store, "me", unit(rng.standard_normal((20, 8))))
    engine = ExactIndex(photo_store)
    engine.nearest("me", "v1", np.ones(8) / np.sqrt(8), 5, -1.0)
    engine.nearest("me", "v1", np.ones(8) / np.sqrt(8), 5, -1.0)
    assert engine.loads == 1
    photo_store.delete_photo("me", f"{3:032x}")
    assert len(engine.nearest("me", "v1", np.ones(8) / np.sqrt(8), 50, -1.0)) == 19
    assert engine.loads == 2


def test_atlas_pipeline_filters_by_owner_and_version_with_enough_candidates():
    pipeline = atlas_pipeline("me", "v1", np.ones(4, np.float32) / 2, limit=30, min_cosine=0.6)
    stage = pipeline[0]["$vectorSearch"]
    assert stage["index"] == ATLAS_INDEX_NAME and stage["path"] == "embedding"
    assert stage["filter"] == {"owner": "me", "model_version": "v1"}
    assert stage["numCandidates"] >= 10 * 30 and stage["limit"] == 30
    assert stage["queryVector"] == [0.5] * 4
    assert pipeline[-1] == {"$match": {"score": {"$gte": 0.8}}}  # cosine 0.6 in Atlas's (1 + cos) / 2


def test_atlas_index_definition_takes_the_bundles_dimension():
    from chalicelib.ops.atlas_setup import vector_index_spec

    spec = vector_index_spec(1153)
    fields = {f["path"]: f for f in spec["definition"]["fields"]}
    assert spec["name"] == ATLAS_INDEX_NAME and spec["type"] == "vectorSearch"
    assert fields["embedding"]["similarity"] == "cosine" and fields["embedding"]["numDimensions"] == 1153
    assert {"owner", "model_version"} <= {p for p, f in fields.items() if f["type"] == "filter"}
    assert vector_index_spec(512)["definition"]["fields"][0]["numDimensions"] == 512  # none kept between calls


class SearchIndexes:
    """The faces collection's Atlas Search index calls, as Atlas answers them (there is no Atlas here)."""

    def __init__(self, indexes=()):
        self.indexes = {i["name"]: i for i in indexes}
        self.calls = []

    def list_search_indexes(self):
        return list(self.indexes.values())

    def create_search_index(self, model):
        document = model.document
        self.calls.append(("create", document["name"]))
        self.indexes[document["name"]] = {"name": document["name"], "latestDefinition": document["definition"]}

    def update_search_index(self, name, definition):
        self.calls.append(("update", name))
        self.indexes[name]["latestDefinition"] = definition


def test_the_vector_index_is_made_with_the_bundles_dimension_and_refuses_another():
    from chalicelib.ops.atlas_setup import DimensionMismatch, ensure_vector_index, indexed_dimensions

    faces = SearchIndexes()
    assert indexed_dimensions(faces) is None
    assert ensure_vector_index(faces, 1153) == "created" and indexed_dimensions(faces) == 1153
    assert ensure_vector_index(faces, 1153) == "updated"  # a redeploy: filters may change, the dimension not
    with pytest.raises(DimensionMismatch, match="takes 1153-d vectors and the bundle makes 512-d"):
        ensure_vector_index(faces, 512)
    assert faces.calls == [("create", ATLAS_INDEX_NAME), ("update", ATLAS_INDEX_NAME)]


def test_the_rollout_refuses_a_bundle_the_index_cannot_take(monkeypatch):
    from model_factory import deploy

    faces = SearchIndexes(
        [{"name": ATLAS_INDEX_NAME, "latestDefinition": {"fields": [{"type": "vector", "numDimensions": 1153}]}}]
    )
    monkeypatch.setenv("STORE_BACKEND", "mongodb")
    monkeypatch.setenv("MONGODB_URI", "mongodb://atlas.invalid")
    monkeypatch.setattr("chalicelib.stores.mongo_connection.open_database", lambda settings, uri: {"faces": faces})
    assert deploy.index_refusal(1153) is None
    assert "takes 1153-d vectors and this bundle makes 512-d" in deploy.index_refusal(512)
    monkeypatch.setenv("STORE_BACKEND", "embedded")
    assert "set the stage's store" in deploy.index_refusal(512)  # no Atlas named: no silent pass


def test_exact_search_with_cohort_normalisation_ranks_and_cuts_by_the_normalised_score(photo_store):
    from chalicelib.shared.score_norm import KeyNormalisation, as_norm

    rng = np.random.default_rng(2)
    vectors = unit(rng.standard_normal((30, 8)))
    means, stds = rng.uniform(0.2, 0.8, 30), rng.uniform(0.02, 0.1, 30)
    add_faces(photo_store, "me", vectors)
    for i, (m, s) in enumerate(zip(means, stds)):
        photo_store.faces.update_one(
            {"owner": "me", "face_id": f"{i:032x}-000"}, {"$set": {"cohort_mean": m, "cohort_std": s}}
        )
    key = KeyNormalisation(0.5, 0.05, threshold=1.0)
    query = vectors[3]
    hits = ExactIndex(photo_store).nearest("me", "v1", query, limit=30, threshold=0.1, key_norm=key)
    raw = vectors @ query
    expected = as_norm(raw, 0.5, 0.05, means, stds)
    wanted = [i for i in np.argsort(-expected) if raw[i] >= 0.1 and expected[i] >= 1.0]
    assert [h[1] for h in hits] == [f"{i:032x}" for i in wanted]
    assert [h[3] for h in hits] == pytest.approx([expected[i] for i in wanted], abs=1e-5)
    assert all(h[2] >= 0.1 for h in hits)
    # Faces indexed without statistics never pass a normalised search.
    photo_store.faces.update_one({"owner": "me", "face_id": f"{3:032x}-000"}, {"$unset": {"cohort_mean": ""}})
    assert f"{3:032x}" not in [h[1] for h in ExactIndex(photo_store).nearest("me", "v1", query, 30, 0.1, key)]


def test_atlas_candidates_are_rescored_with_the_cohort(monkeypatch):
    from chalicelib.shared.score_norm import KeyNormalisation

    rows = [
        {"face_id": "a", "photo_id": "pa", "score": 0.9, "cohort_mean": 0.7, "cohort_std": 0.05},  # cos 0.8
        {"face_id": "b", "photo_id": "pb", "score": 0.85, "cohort_mean": 0.3, "cohort_std": 0.05},
    ]  # cos 0.7

    class Faces:
        def aggregate(self, pipeline):
            return iter(rows)

    class Store:
        faces = Faces()
        atlas_nearest = PhotoStore.atlas_nearest  # the store's own code around the played $vectorSearch

    hits = AtlasIndex(Store()).nearest("me", "v1", np.ones(4) / 2, 30, 0.5, KeyNormalisation(0.5, 0.05, 3.0))
    # b: ½[(0.7−0.5)/0.05 + (0.7−0.3)/0.05] = 6 beats a: ½[(0.8−0.5)/0.05 + (0.8−0.7)/0.05] = 4
    assert [h[0] for h in hits] == ["b", "a"] and hits[0][3] == pytest.approx(6.0)
    assert hits[1][2] == pytest.approx(0.8)


@pytest.mark.parametrize("limit", [1, 30, 999, 1000, 1001, MAX_HITS, ATLAS_MAX_CANDIDATES, 50_000])
def test_atlas_limits_hold_at_every_limit_search_can_ask(limit):
    """Atlas refuses numCandidates > 10,000 and limit > numCandidates (search asks MAX_HITS)."""
    stage = atlas_pipeline("me", "v1", np.ones(4, np.float32) / 2, limit=limit, min_cosine=0.6)[0]["$vectorSearch"]
    assert 1 <= stage["limit"] <= stage["numCandidates"] <= 10_000
    assert stage["limit"] == min(limit, 10_000) and stage["numCandidates"] >= min(10 * limit, 10_000)


def test_both_engines_expand_a_query_alike(photo_store):
    """Exact scan and Atlas (its $vectorSearch played from the same store, its vectors fetched
    from it) admit the same faces through query expansion, and expansion admits a face the key
    alone does not: the person's other photo, not the stranger as close to the key."""
    from chalicelib.shared.score_norm import KeyNormalisation, QueryExpansion

    key = unit(np.array([[1, 0, 0, 0]], np.float32))[0]
    person = unit(np.array([[1, 0.3, 0, 0], [1, 0.3, 0.05, 0], [1, 0.9, 0, 0]], np.float32))
    stranger = unit(np.array([[1, 0, 0.9, 0]], np.float32))
    rng = np.random.default_rng(4)
    others = rng.standard_normal((20, 4)).astype(np.float32)
    others[:, 0] = -np.abs(others[:, 0])  # strangers far from the key
    others = unit(others)
    vectors = np.vstack([person, stranger, others])
    add_faces(photo_store, "me", vectors)
    add_faces(photo_store, "them", person, first=100)  # another user's look-alikes: never seen
    photo_store.faces.update_many({}, {"$set": {"cohort_mean": 0.0, "cohort_std": 0.1}})
    expansion = QueryExpansion(min_score=9.0, max_faces=10, weight=1.0, threshold=8.0)

    class Atlas:
        """$vectorSearch as Atlas answers it: the owner's faces of the version by cosine, best first."""

        def aggregate(self, pipeline):
            stage = pipeline[0]["$vectorSearch"]
            floor = pipeline[-1]["$match"]["score"]["$gte"]
            rows = []
            for face in photo_store.faces.find({"owner": stage["filter"]["owner"]}):
                score = (1 + float(np.dot(binary_to_vector(face["embedding"]), stage["queryVector"]))) / 2
                if score >= floor:
                    rows.append(
                        {**{k: face[k] for k in ("face_id", "photo_id", "cohort_mean", "cohort_std")}, "score": score}
                    )
            return iter(sorted(rows, key=lambda r: -r["score"])[: stage["limit"]])

    class AtlasStore:
        faces = Atlas()
        atlas_nearest = PhotoStore.atlas_nearest
        vectors_of_faces = photo_store.vectors_of_faces

    def photos(hits):
        return [h[1] for h in hits]

    alone = KeyNormalisation(0.0, 0.1, 8.0)
    expanded = KeyNormalisation(0.0, 0.1, 8.0, expansion)
    base = photos(ExactIndex(photo_store).nearest("me", "v1", key, MAX_HITS, 0.5, alone))
    exact = ExactIndex(photo_store).nearest("me", "v1", key, MAX_HITS, 0.5, expanded)
    atlas = AtlasIndex(AtlasStore()).nearest("me", "v1", key, MAX_HITS, 0.5, expanded)
    assert base == [f"{0:032x}", f"{1:032x}"]
    assert set(photos(exact)) == {f"{i:032x}" for i in range(3)}  # t found, the stranger (3) not
    assert photos(atlas) == photos(exact)
    assert [h[3] for h in atlas] == pytest.approx([h[3] for h in exact], abs=1e-5)


def clustered(rng, people: int, faces: int, dim: int, spread: float = 0.35):
    """Unit vectors of ``people`` clusters on a 24-dimensional subspace plus a little of everything
    else: concentrated like face embeddings, so a low-rank bound has something to prune."""
    directions = np.linalg.qr(rng.standard_normal((dim, 24)))[0]
    centres = unit(rng.standard_normal((people, 24)))
    rows = centres[rng.integers(0, people, faces)] + spread * rng.standard_normal((faces, 24)) / np.sqrt(24)
    return unit(rows @ directions.T + 0.05 * rng.standard_normal((faces, dim)) / np.sqrt(dim))


def test_the_low_rank_bound_keeps_every_face_above_the_floor_and_prunes_the_rest():
    from chalicelib.stores.low_rank_bound import LowRankBound

    rng = np.random.default_rng(5)
    vectors = clustered(rng, 40, 3000, 96).astype(np.float32)
    bound = LowRankBound.fit(vectors, blocks=(16, 16), sample=1000)
    for query in vectors[:20]:
        for floor in (0.3, 0.6, 0.9):
            kept, upper = bound.candidates(query, floor)
            assert set(np.nonzero(vectors @ query >= floor)[0]) <= set(kept)
            assert (upper >= vectors[kept] @ query).all()
            assert len(kept) < 0.5 * len(vectors)  # it does prune: the clusters are far apart
    # A basis as wide as the vectors leaves no residual: the bound is the cosine itself.
    whole = LowRankBound.fit(vectors)
    assert whole.blocks == (96,)
    assert set(whole.candidates(vectors[0], 0.6)[0]) == set(np.nonzero(vectors @ vectors[0] >= 0.6 - 1e-4)[0])
    # Rows that are not unit vectors (a scaled copy) are bounded too.
    assert set(np.nonzero(2 * vectors @ vectors[0] >= 0.9)[0]) <= set(
        LowRankBound.fit(2 * vectors, blocks=(8,)).candidates(vectors[0], 0.9)[0]
    )


def test_exact_search_with_the_bound_returns_what_the_full_scan_does(photo_store):
    from chalicelib.shared.score_norm import KeyNormalisation, QueryExpansion
    from chalicelib.stores.low_rank_bound import LowRankBound
    from chalicelib.stores.vector_index import _rows_to_score

    rng = np.random.default_rng(6)
    vectors = clustered(rng, 12, 400, 300)
    add_faces(photo_store, "me", vectors)
    stats = np.column_stack([rng.uniform(0.2, 0.4, 400), rng.uniform(0.05, 0.1, 400)])
    for i, (m, s) in enumerate(stats):
        photo_store.faces.update_one(
            {"owner": "me", "face_id": f"{i:032x}-000"}, {"$set": {"cohort_mean": m, "cohort_std": s}}
        )
    full, bounded = ExactIndex(photo_store), ExactIndex(photo_store, bound_min_faces=1)
    expansion = QueryExpansion(min_score=3.0, max_faces=5, weight=1.0, threshold=2.0)
    small_pool = QueryExpansion(min_score=3.0, max_faces=5, weight=1.0, threshold=2.0, pool=8)
    decisions = [
        (0.5, None),
        (0.5, KeyNormalisation(0.3, 0.08, 2.5)),
        (0.5, KeyNormalisation(0.3, 0.08, 6.0)),
        (0.5, KeyNormalisation(0.3, 0.08, None)),  # ranked by the normalised score, cut by cosine only
        (0.5, KeyNormalisation(0.3, 0.08, 2.5, expansion)),
        (0.5, KeyNormalisation(0.3, 0.08, 6.0, small_pool)),  # the pool is filled face by face
        (-1.0, KeyNormalisation(0.3, 0.08, 2.5)),  # no floor: the normalised threshold alone prunes
        (-1.0, None),  # nothing to prune by: a full scan
    ]
    for query in vectors[:10]:
        for floor, key_norm in decisions:
            got, want = (e.nearest("me", "v1", query, 50, floor, key_norm) for e in (bounded, full))
            assert [h[:2] for h in got] == [h[:2] for h in want] and len(want) > 1
            assert np.array([h[2:] for h in got]) == pytest.approx(
                np.array([h[2:] for h in want]), abs=1e-5
            )  # the same sums, another order
    _, matrix, stored, bound = bounded._vectors("me", "v1")
    assert full._vectors("me", "v1")[3] is None and bound is not None
    kept, upper = bound.candidates(vectors[0], 0.5)
    scores = KeyNormalisation(0.3, 0.08, None).scores(matrix[kept] @ vectors[0], stored[kept, 0], stored[kept, 1])
    strict = KeyNormalisation(0.3, 0.08, float(np.median(scores)))  # half the kept faces pass it
    scored, sims = _rows_to_score(matrix, vectors[0], kept, upper, stored, 0.5, strict)
    assert len(scored) < len(kept) < len(vectors)  # both bounds prune
    np.testing.assert_allclose(sims, matrix[scored] @ vectors[0], atol=1e-6)
    # With confident matches, every face of expansion's pool (the best by normalised score) is scored,
    # also when the bounds are loose (a narrow basis) and do not order the faces as their scores do.
    loose = LowRankBound.fit(matrix, blocks=(2,))
    for query, size in zip(vectors[:12], [5, 20, 40] * 4):
        kept, upper = loose.candidates(query, 0.5)
        scores = KeyNormalisation(0.3, 0.08, None).scores(matrix[kept] @ query, stored[kept, 0], stored[kept, 1])
        top = float(np.sort(scores)[-3])  # three confident matches
        pool = QueryExpansion(min_score=top, max_faces=5, weight=1.0, threshold=2.0, pool=size)
        scored, _ = _rows_to_score(matrix, query, kept, upper, stored, 0.5, KeyNormalisation(0.3, 0.08, top, pool))
        eligible = matrix[kept] @ query >= 0.5
        assert set(kept[eligible][np.argsort(-scores[eligible])[:size]]) <= set(scored)


def test_many_keys_at_once_find_what_each_key_finds_alone(photo_store):
    """``nearest_many`` (one matrix product for a person's faces) against ``nearest`` key by key,
    with the full scan and with the bound, with and without normalisation and expansion."""
    from chalicelib.shared.score_norm import KeyNormalisation, QueryExpansion

    rng = np.random.default_rng(7)
    vectors = clustered(rng, 10, 300, 64)
    add_faces(photo_store, "me", vectors)
    for i, (m, s) in enumerate(zip(rng.uniform(0.2, 0.4, 300), rng.uniform(0.05, 0.1, 300))):
        photo_store.faces.update_one(
            {"owner": "me", "face_id": f"{i:032x}-000"}, {"$set": {"cohort_mean": m, "cohort_std": s}}
        )
    expansion = QueryExpansion(min_score=3.0, max_faces=5, weight=1.0, threshold=2.0)
    keys = [None, KeyNormalisation(0.3, 0.08, 2.5), KeyNormalisation(0.3, 0.08, 2.5, expansion), None]
    queries = list(vectors[[0, 31, 62, 93]])
    for engine in (ExactIndex(photo_store), ExactIndex(photo_store, bound_min_faces=1)):
        together = engine.nearest_many("me", "v1", queries, 40, 0.3, keys)
        alone = [engine.nearest("me", "v1", q, 40, 0.3, k) for q, k in zip(queries, keys)]
        assert [len(hits) for hits in together] == [len(hits) for hits in alone] and all(alone)
        for got, want in zip(together, alone):
            assert [h[:2] for h in got] == [h[:2] for h in want]
            assert np.array([h[2:] for h in got]) == pytest.approx(np.array([h[2:] for h in want]), abs=1e-5)
    assert ExactIndex(photo_store).nearest_many("me", "v1", [], 40, 0.3, []) == []
