"""Face search over the local stack with real photos: every key source, multi-face keys,
no-face keys, thresholds, pagination and isolation."""

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.services import Services
from chalicelib.settings import Settings
from local_stack.aws import client
from local_stack.pump import EventPump
from tests.conftest import new_user, post_to_s3
from tests.contract import checked_chalice_client
from tests.face_fixtures import FACEDATA, needs_facedata
from tests.test_indexing import drain, empty, face_endpoint, indexing, upload  # noqa: F401 (fixtures)

pytestmark = needs_facedata

PEOPLE = FACEDATA / "people/deepface" if FACEDATA else None


@pytest.fixture(scope="module")
def module_services(aws_stack, face_endpoint, tmp_path_factory):  # noqa: F811
    """One set of services for this module: its album is indexed once (that was most of these
    tests' time) and the tests only read it; a test that changes an album builds its own."""
    with pytest.MonkeyPatch.context() as patch:
        env = aws_stack.app_environment()
        env["EMBEDDED_STORE_PATH"] = str(tmp_path_factory.mktemp("search-store"))
        for key, value in env.items():
            patch.setenv(key, value)
        svc = Services(replace(Settings.from_env(env), face_endpoint_url=face_endpoint, face_timeout=60))
        svc.face_client.sleep = lambda seconds: None
        patch.setattr(app_module, "services", svc)
        yield svc


@pytest.fixture(scope="module")
def api(module_services):
    """The module's API client (it calls whatever app_module.services is at the time)."""
    with Client(app_module.app) as chalice_client:
        yield checked_chalice_client(chalice_client)


def _album(api, alice, bob, pump):
    """Alice's album: Jolie x3, Clooney x3, a group photo; Bob has one Jolie photo."""
    jolie = sorted((PEOPLE / "Angelina_Jolie").glob("*.jpg"))
    clooney = sorted((PEOPLE / "George_Clooney").glob("*.jpg"))
    ids = {
        "jolie": [upload(api, alice, p.read_bytes(), "image/jpeg") for p in jolie[1:4]],
        "clooney": [upload(api, alice, p.read_bytes(), "image/jpeg") for p in clooney[1:4]],
        "group": upload(api, alice, (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes(), "image/jpeg"),
        "bob_jolie": upload(api, bob, jolie[4].read_bytes(), "image/jpeg"),
    }
    drain(pump)
    return alice, bob, ids, jolie[0], clooney[0]


@pytest.fixture(scope="module")
def album(api, module_services, aws_stack):
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    for url in (aws_stack.queue_url, aws_stack.dlq_url):
        empty(sqs, url)
    pump = EventPump(sqs, aws_stack.queue_url, app_module.index_photos, wait_seconds=0)
    return _album(api, new_user(aws_stack, "alice"), new_user(aws_stack, "bob"), pump)


@pytest.fixture
def fresh_album(api, make_user, indexing):  # noqa: F811
    return _album(api, make_user("alice"), make_user("bob"), indexing[1])


def search(api, user, body):
    return api.http.post("/search", headers=user.headers, body=json.dumps(body))


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_inline_key_finds_that_person_first_and_only(api, album):
    alice, _, ids, jolie_key, clooney_key = album
    response = search(api, alice, {"image_base64": b64(jolie_key)})
    assert response.status_code == 200, response.body
    body = response.json_body
    found = [r["photo_id"] for r in body["results"]]
    assert set(found) == set(ids["jolie"])
    sims = [r["similarity"] for r in body["results"]]
    scores = [r["score"] for r in body["results"]]
    assert min(sims) >= body["threshold"]  # the cosine floor
    assert body["normalised"] and scores == sorted(scores, reverse=True)
    # A result passes on its own score or by query expansion's; its score is the better of the two.
    cuts = [t for t in (body["score_threshold"], body["expanded_threshold"]) if t is not None]
    assert min(scores) >= min(cuts)
    assert body["used_face"] == 0 and len(body["key_faces"]) == 1 and body["key_photo_id"] is None
    assert body["results"][0]["thumbnail_url"] and len(body["results"][0]["box"]) == 4
    # In words: her own photos pass the decision, the best of them well above it.
    words = [r["match"] for r in body["results"]]
    assert set(words) <= {"very_likely", "likely"} and words[0] == "very_likely", body["results"]
    # "Possible" matches lie below the decision: never a result again, ranked, at most ten.
    possible = body["possible"]
    assert len(possible) <= 10 and not {r["photo_id"] for r in possible} & set(found)
    assert all(r["match"] == "possible" for r in possible)
    assert [r["score"] for r in possible] == sorted((r["score"] for r in possible), reverse=True)
    assert all(r["score"] < min(cuts) or r["similarity"] < body["threshold"] for r in possible)
    clooney = [r["photo_id"] for r in search(api, alice, {"image_base64": b64(clooney_key)}).json_body["results"]]
    assert set(clooney) == set(ids["clooney"])


def test_uploaded_key_photo(api, album):
    alice, _, ids, jolie_key, _ = album
    response = api.http.post(
        "/search/uploads",
        headers=alice.headers,
        body=json.dumps({"filename": "key.jpg", "content_type": "image/jpeg", "size": jolie_key.stat().st_size}),
    )
    assert response.status_code == 201
    key = response.json_body
    assert key["fields"]["key"] == f"keys/{alice.sub}/{key['key_id']}.jpg"
    policy = json.loads(base64.b64decode(key["fields"]["policy"]))["conditions"]
    # Tagged for the bucket's one-day lifecycle rule; the policy pins the tag.
    assert {"tagging": key["fields"]["tagging"]} in policy and "search-key" in key["fields"]["tagging"]
    assert post_to_s3(key, jolie_key.read_bytes()).status_code == 204
    body = search(api, alice, {"key_id": key["key_id"]}).json_body
    assert {r["photo_id"] for r in body["results"]} == set(ids["jolie"]) and body["key_photo_id"] is None
    assert search(api, alice, {"key_id": "0" * 32}).status_code == 404

    # A key that is a photo of the album (its hash declared) is not its own result.
    copy = sorted((PEOPLE / "Angelina_Jolie").glob("*.jpg"))[1].read_bytes()
    file = {
        "filename": "k.jpg",
        "content_type": "image/jpeg",
        "size": len(copy),
        "sha256": hashlib.sha256(copy).hexdigest(),
    }
    key = api.http.post("/search/uploads", headers=alice.headers, body=json.dumps(file)).json_body
    assert post_to_s3(key, copy).status_code == 204
    body = search(api, alice, {"key_id": key["key_id"]}).json_body
    assert body["key_photo_id"] == ids["jolie"][0]
    assert {r["photo_id"] for r in body["results"]} == set(ids["jolie"][1:])


def test_face_already_in_the_album(api, album):
    alice, _, ids, _, _ = album
    photo = api.http.get(f"/photos/{ids['clooney'][0]}", headers=alice.headers).json_body
    body = search(api, alice, {"photo_id": photo["photo_id"], "face_id": photo["faces"][0]["face_id"]}).json_body
    assert body["key_photo_id"] == photo["photo_id"]  # the key's own photo is not a result
    assert {r["photo_id"] for r in body["results"]} == set(ids["clooney"][1:])
    wrong = search(api, alice, {"photo_id": ids["jolie"][0], "face_id": photo["faces"][0]["face_id"]})
    assert wrong.status_code == 404


def test_a_result_signs_only_the_urls_it_answers(api, album, module_services, monkeypatch):
    """A result answers a thumbnail and the original: two signatures, not the photo view's three."""
    alice, _, ids, _, _ = album
    photo = api.http.get(f"/photos/{ids['clooney'][0]}", headers=alice.headers).json_body
    storage = module_services.object_storage
    signed, sign = [], storage.presigned_get
    monkeypatch.setattr(storage, "presigned_get", lambda *a, **k: signed.append(a[0]) or sign(*a, **k))
    body = search(api, alice, {"photo_id": photo["photo_id"], "face_id": photo["faces"][0]["face_id"]}).json_body
    assert body["results"] and all(r["thumbnail_url"] and r["url"] for r in body["results"])
    assert len(signed) == 2 * len(body["results"])


def test_multi_face_key_chooses_a_face(api, album):
    alice, _, ids, _, _ = album
    group = b64(FACEDATA / "groups/dlib/2008_002470.jpg")
    body = search(api, alice, {"image_base64": group, "face": 2}).json_body
    assert len(body["key_faces"]) == 6 and body["used_face"] == 2
    # The group photo is in the album: it is the key, not a result.
    assert body["key_photo_id"] == ids["group"]
    assert ids["group"] not in {r["photo_id"] for r in body["results"] + body["possible"]}
    assert search(api, alice, {"image_base64": group, "face": 6}).status_code == 400


def test_key_without_a_face_is_422(api, album):
    alice, _, _, _, _ = album
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((400, 300)).convert("RGB").save(buffer, "JPEG")
    response = search(api, alice, {"image_base64": base64.b64encode(buffer.getvalue()).decode()})
    assert response.status_code == 422 and response.json_body["error"] == "no_face"
    bad = search(api, alice, {"image_base64": base64.b64encode(b"not an image").decode()})
    assert bad.status_code == 400


def test_threshold_and_pagination(api, album):
    alice, _, ids, jolie_key, _ = album
    loose = search(api, alice, {"image_base64": b64(jolie_key), "threshold": 0.0, "limit": 2}).json_body
    assert len(loose["results"]) == 2 and loose["next_cursor"]
    seen = [r["photo_id"] for r in loose["results"]]
    cursor = loose["next_cursor"]
    while cursor:
        page = search(
            api, alice, {"image_base64": b64(jolie_key), "threshold": 0.0, "limit": 2, "cursor": cursor}
        ).json_body
        seen += [r["photo_id"] for r in page["results"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 7  # every photo of the album once, at threshold 0
    strict = search(api, alice, {"image_base64": b64(jolie_key), "threshold": 0.99}).json_body
    assert strict["results"] == []
    for bad in ({"threshold": 1.5}, {"threshold": "high"}, {"limit": 0}, {"cursor": "%%"}):
        assert search(api, alice, dict({"image_base64": b64(jolie_key)}, **bad)).status_code == 400


def test_body_must_name_exactly_one_key(api, album):
    alice, _, _, jolie_key, _ = album
    assert search(api, alice, {}).status_code == 400
    assert search(api, alice, {"image_base64": b64(jolie_key), "key_id": "0" * 32}).status_code == 400


def test_isolation(api, album):
    alice, bob, ids, jolie_key, _ = album
    bob_results = search(api, bob, {"image_base64": b64(jolie_key), "threshold": 0.0}).json_body["results"]
    assert [r["photo_id"] for r in bob_results] == [ids["bob_jolie"]]
    photo = api.http.get(f"/photos/{ids['jolie'][0]}", headers=alice.headers).json_body
    stolen = search(api, bob, {"photo_id": photo["photo_id"], "face_id": photo["faces"][0]["face_id"]})
    assert stolen.status_code == 404
    key = api.http.post(
        "/search/uploads",
        headers=alice.headers,
        body=json.dumps({"filename": "k.jpg", "content_type": "image/jpeg", "size": 100}),
    ).json_body
    post_to_s3(key, jolie_key.read_bytes())
    assert search(api, bob, {"key_id": key["key_id"]}).status_code == 404


def test_cache_is_invalidated_by_indexing_and_deletion(api, fresh_album, indexing):  # noqa: F811
    services, pump = indexing
    alice, _, ids, jolie_key, _ = fresh_album
    first = search(api, alice, {"image_base64": b64(jolie_key)}).json_body
    loads = services.vector_index.loads
    search(api, alice, {"image_base64": b64(jolie_key)})
    assert services.vector_index.loads == loads  # warm: no reload
    api.http.delete(f"/photos/{ids['jolie'][0]}", headers=alice.headers)
    after = search(api, alice, {"image_base64": b64(jolie_key)}).json_body
    assert services.vector_index.loads == loads + 1
    assert len(after["results"]) == len(first["results"]) - 1
