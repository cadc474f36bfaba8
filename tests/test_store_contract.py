"""One contract for every store backend: mongomock, the embedded store, and real MongoDB when MONGODB_URI is set."""

import multiprocessing
import os
import uuid
from datetime import timedelta

import numpy as np
import pytest
from pymongo.errors import DuplicateKeyError

from chalicelib.clock import now_ms
from chalicelib.settings import Settings
from chalicelib.stores.mongo_connection import open_database
from chalicelib.stores.photo_store import PhotoStore

BACKENDS = ["memory", "embedded", "mongodb"]


def make_store(backend: str, path) -> PhotoStore:
    if backend == "mongodb":
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            pytest.skip("MONGODB_URI is not set: no real MongoDB to run the contract against")
        settings = Settings(
            store_backend="mongodb", mongodb_uri=uri, mongodb_database=f"ms_test_{uuid.uuid4().hex[:8]}"
        )
        database = open_database(settings, uri)
        photo_store = PhotoStore(database)
        photo_store.ensure_indexes()
        yield photo_store
        database.client.drop_database(database.name)
        return
    settings = Settings(store_backend=backend, embedded_store_path=str(path))
    photo_store = PhotoStore(open_database(settings))
    photo_store.ensure_indexes()
    yield photo_store


@pytest.fixture(params=BACKENDS)
def photo_store(request, tmp_path):
    yield from make_store(request.param, tmp_path / "store")


def photo(owner, photo_id, at, **extra):
    return dict(
        {
            "owner": owner,
            "photo_id": photo_id,
            "key": f"photos/{owner}/{photo_id}.jpg",
            "status": "pending",
            "uploaded_at": at,
            "face_count": 0,
        },
        **extra,
    )


def face(photo_id, index, vector, version="v1"):
    return {
        "face_id": f"{photo_id}-{index}",
        "face_index": index,
        "box": [index, 0, 10, 10],
        "score": 0.9,
        "landmarks": [[0.0, 0.0]] * 5,
        "embedding": vector,
        "model_version": version,
    }


def test_add_get_update(photo_store):
    at = now_ms()
    photo_store.add_photos([photo("a", "p1", at)])
    got = photo_store.get_photo("a", "p1")
    assert got["status"] == "pending" and "_id" not in got
    assert got["uploaded_at"].replace(tzinfo=None) == at.replace(tzinfo=None)
    assert photo_store.update_photo("a", "p1", {"status": "indexed", "face_count": 2})
    assert photo_store.get_photo("a", "p1")["status"] == "indexed"
    assert not photo_store.update_photo("b", "p1", {"status": "failed"})
    assert photo_store.get_photo("b", "p1") is None


def test_unique_owner_and_photo_id(photo_store):
    photo_store.add_photos([photo("a", "p1", now_ms())])
    with pytest.raises(DuplicateKeyError):
        photo_store.add_photos([photo("a", "p1", now_ms())])
    photo_store.add_photos([photo("b", "p1", now_ms())])  # another owner may reuse it


def test_pagination_newest_first_with_ties(photo_store):
    base = now_ms()
    rows = [photo("a", f"p{i:02d}", base + timedelta(seconds=i // 3)) for i in range(10)]
    photo_store.add_photos(rows)
    photo_store.add_photos([photo("b", "zz", base + timedelta(days=1))])
    seen, cursor = [], None
    while True:
        page, cursor = photo_store.list_photos("a", 3, cursor)
        seen += [p["photo_id"] for p in page]
        if not cursor:
            break
    expected = [r["photo_id"] for r in sorted(rows, key=lambda r: (r["uploaded_at"], r["photo_id"]), reverse=True)]
    assert seen == expected
    assert photo_store.count_photos("a") == 10 and photo_store.count_photos("a", status="pending") == 10


def test_faces_round_trip_as_float32_vectors(photo_store):
    photo_store.add_photos([photo("a", "p1", now_ms())])
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 128)).astype(np.float32)
    photo_store.replace_faces("a", "p1", [face("p1", i, vectors[i]) for i in range(3)])
    listed = photo_store.list_faces("a", "p1")
    assert [f["face_index"] for f in listed] == [0, 1, 2]
    assert "embedding" not in listed[0]
    ids, matrix, _ = photo_store.face_vectors("a", "v1")
    order = [int(i["face_id"].rsplit("-", 1)[1]) for i in ids]
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, vectors[order])
    assert photo_store.face_vectors("a", "v2")[1].shape[0] == 0
    assert photo_store.face_vectors("b", "v1")[1].shape[0] == 0


def test_replace_faces_is_idempotent(photo_store):
    photo_store.add_photos([photo("a", "p1", now_ms())])
    faces = [face("p1", i, [float(i), 1.0]) for i in range(2)]
    photo_store.replace_faces("a", "p1", faces)
    photo_store.replace_faces("a", "p1", faces)
    assert len(photo_store.list_faces("a", "p1")) == 2
    photo_store.replace_faces("a", "p1", faces[:1])
    assert [f["face_id"] for f in photo_store.list_faces("a", "p1")] == ["p1-0"]


def test_delete_photo_and_owner(photo_store):
    at = now_ms()
    photo_store.add_photos([photo("a", "p1", at), photo("a", "p2", at), photo("b", "p3", at)])
    photo_store.replace_faces("a", "p1", [face("p1", 0, [1.0, 0.0])])
    photo_store.replace_faces("b", "p3", [face("p3", 0, [1.0, 0.0])])
    assert photo_store.delete_photo("a", "p1")["photo_id"] == "p1"
    assert photo_store.delete_photo("a", "p1") is None
    assert photo_store.list_faces("a", "p1") == []
    assert photo_store.delete_owner("a") == {"photos": 1, "faces": 0}
    assert photo_store.get_photo("b", "p3") is not None
    assert len(photo_store.list_faces("b", "p3")) == 1


def _writer(path, worker, count):
    photo_store = PhotoStore(open_database(Settings(store_backend="embedded", embedded_store_path=path)))
    photo_store.add_photos([photo("shared", f"w{worker}-{i}", now_ms()) for i in range(count)])
    for i in range(count):
        photo_store.update_photo("shared", f"w{worker}-{i}", {"status": "indexed"})


def test_embedded_store_is_shared_by_processes_and_survives_reopen(tmp_path):
    path = str(tmp_path / "store")
    PhotoStore(open_database(Settings(store_backend="embedded", embedded_store_path=path))).ensure_indexes()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    reopened = PhotoStore(open_database(Settings(store_backend="embedded", embedded_store_path=path)))
    assert reopened.count_photos("shared") == 100
    assert reopened.count_photos("shared", status="indexed") == 100


def hosts(photo_store: PhotoStore) -> list:
    return list(photo_store.db.client.topology_description.server_descriptions())


def test_a_rotated_atlas_secret_reaches_a_running_container_without_a_redeploy(aws_stack, monkeypatch):
    """Secrets Manager (moto's) holds the URI; pymongo's client is real and lazy, so no server is
    needed to see which URI each store opened with. Atlas's indexes are a deploy step, never opened here."""
    import json

    from chalicelib.services import Services
    from local_stack.aws import client

    secrets = client("secretsmanager", aws_stack.aws_endpoint_url)
    name = f"memory-studio/test/atlas-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=json.dumps({"uri": "mongodb://user:old@db-one.invalid/"}))
    env = dict(aws_stack.app_environment(), STORE_BACKEND="mongodb", MONGODB_SECRET_ID=name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # boto3's credentials
    services = Services(Settings.from_env(dict(env, ATLAS_SECRET_MAX_AGE="0")))
    first = services.photo_store
    album = services.album
    assert hosts(first) == [("db-one.invalid", 27017)]
    assert services.refresh() is False and services.photo_store is first  # unchanged secret: same connection

    secrets.put_secret_value(SecretId=name, SecretString="mongodb://user:new@db-two.invalid/")  # a plain URI
    assert services.refresh() is True
    second = services.photo_store
    assert second is not first and services.album is not album  # nothing keeps the old connection
    assert hosts(second) == [("db-two.invalid", 27017)]

    # Within the cache's age a rotation is not looked up: one Secrets Manager call per 5 minutes.
    cached = Services(Settings.from_env(env))
    opened = cached.photo_store
    secrets.put_secret_value(SecretId=name, SecretString="mongodb://user:third@db-three.invalid/")
    assert cached.refresh() is False and cached.photo_store is opened


def test_the_timeline_and_the_trash(photo_store):
    """Timeline order and month counts; a trashed photo leaves both and its faces leave ``faces``
    (so search and people leave it out), restore brings them back, the purge query finds it by age."""
    at = now_ms()
    photo_store.add_photos([photo("a", f"p{i}", at - timedelta(days=i)) for i in range(3)] + [photo("b", "q", at)])
    photo_store.update_photo("a", "p2", {"timeline_at": at.replace(tzinfo=None) + timedelta(hours=1)})  # taken later
    assert [p["photo_id"] for p in photo_store.list_photos("a", 10)[0]] == ["p2", "p0", "p1"]
    photo_store.replace_faces("a", "p0", [face("p0", 0, [1.0, 0.0]), face("p0", 1, [0.0, 1.0])])
    assert photo_store.trash_photo("a", "p0", at) and not photo_store.trash_photo("a", "p0", at)  # once
    assert [p["photo_id"] for p in photo_store.list_photos("a", 10)[0]] == ["p2", "p1"]
    assert sum(n for _, n in photo_store.month_counts("a")) == 2
    assert (
        photo_store.face_vectors("a", "v1")[0] == [] and photo_store.trashed_faces.count_documents({"owner": "a"}) == 2
    )
    assert [p["photo_id"] for p in photo_store.list_trash("a", 10)[0]] == ["p0"] and photo_store.list_trash("b", 10)[
        0
    ] == []
    assert [p["photo_id"] for p in photo_store.trashed_before(at + timedelta(seconds=1), 10)] == ["p0"]
    assert photo_store.trashed_before(at - timedelta(seconds=1), 10) == []
    assert photo_store.restore_photo("b", "p0", set()) is None  # another owner's
    assert len(photo_store.restore_photo("a", "p0", set())) == 2
    assert {f["face_id"] for f in photo_store.face_vectors("a", "v1")[0]} == {"p0-0", "p0-1"}
    assert photo_store.trashed_faces.count_documents({"owner": "a"}) == 0
    photo_store.trash_photo("a", "p0", at)
    assert (
        photo_store.delete_photo("a", "p0") is not None
        and photo_store.trashed_faces.count_documents({"owner": "a"}) == 0
    )
