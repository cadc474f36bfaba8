"""User B can reach nothing of user A's: a matrix over every route."""

import json

import pytest

from chalicelib.face_client import FaceClient, HttpTransport
from tests.conftest import post_to_s3, request_uploads, stored_face

JPEG = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 100}
PHOTO_ROUTES = [("get", "/photos/{id}"), ("delete", "/photos/{id}")]


@pytest.fixture
def two_users(api, make_user, services):
    alice, bob = make_user("alice"), make_user("bob")
    upload = request_uploads(api, alice, [JPEG])[0]
    post_to_s3(upload, b"alice's bytes")
    services.photo_store.replace_faces(
        alice.sub, upload["photo_id"], [stored_face(upload["photo_id"], box=(1, 2, 3, 4))]
    )
    return alice, bob, upload


@pytest.mark.parametrize("method, route", PHOTO_ROUTES)
def test_other_users_photo_is_not_found(api, two_users, method, route):
    alice, bob, upload = two_users
    response = getattr(api.http, method)(route.format(id=upload["photo_id"]), headers=bob.headers)
    assert response.status_code == 404
    # And alice's photo is untouched.
    assert api.http.get(route.format(id=upload["photo_id"]), headers=alice.headers).status_code == 200


def test_listing_shows_only_own_photos(api, two_users):
    alice, bob, upload = two_users
    assert api.http.get("/photos", headers=bob.headers).json_body["photos"] == []
    alice_listing = json.dumps(api.http.get("/photos", headers=alice.headers).json_body)
    assert upload["photo_id"] in alice_listing
    bob_upload = request_uploads(api, bob, [JPEG])[0]
    bob_listing = json.dumps(api.http.get("/photos", headers=bob.headers).json_body)
    assert alice.sub not in bob_listing and upload["photo_id"] not in bob_listing
    assert bob_upload["photo_id"] in bob_listing


def test_uploads_land_only_in_own_prefix(api, two_users):
    alice, bob, _ = two_users
    # Whatever the client asks for, the key is built from the verified sub.
    files = [{"filename": f"../../{alice.sub}/photos/x.jpg", "content_type": "image/jpeg", "size": 10}]
    upload = request_uploads(api, bob, files)[0]
    assert upload["fields"]["key"].startswith(f"photos/{bob.sub}/")
    policy = json.loads(__import__("base64").b64decode(upload["fields"]["policy"]))
    assert {"key": upload["fields"]["key"]} in policy["conditions"]


def test_cursor_of_another_user_reveals_nothing(api, two_users):
    alice, bob, _ = two_users
    for _ in range(3):
        request_uploads(api, alice, [JPEG])
    cursor = api.http.get("/photos?limit=1", headers=alice.headers).json_body["next_cursor"]
    assert cursor
    page = api.http.get(f"/photos?cursor={cursor}", headers=bob.headers).json_body
    assert page["photos"] == []


def test_delete_me_of_one_user_spares_the_other(api, two_users):
    alice, bob, upload = two_users
    assert api.http.delete("/me", headers=bob.headers).status_code == 204
    assert api.http.get(f"/photos/{upload['photo_id']}", headers=alice.headers).status_code == 200


PERSON_ROUTES = [
    ("get", "/people/{id}", None),
    ("patch", "/people/{id}", {"name": "Mine now"}),
    ("delete", "/people/{id}", None),
    ("get", "/people/{id}/photos", None),
    ("get", "/people/{id}/suggestions", None),
    ("post", "/people/{id}/suggestions", {"answers": [{"face_id": "{face}", "accept": True}]}),
]


@pytest.fixture
def alices_person(services, two_users):
    alice, bob, upload = two_users
    person = services.people_store.create(alice.sub, "Alice's friend")
    face_id = f"{upload['photo_id']}-000"
    services.people_store.set_by_user(alice.sub, face_id, person["person_id"], None)
    services.people_store.refresh(alice.sub, [person["person_id"]])
    return alice, bob, person["person_id"], face_id


@pytest.mark.parametrize("method, route, body", PERSON_ROUTES)
def test_other_users_person_is_not_found(api, alices_person, method, route, body):
    alice, bob, person_id, face_id = alices_person
    payload = json.dumps(body).replace("{face}", face_id) if body else None
    kwargs = {"body": payload} if payload else {}
    response = getattr(api.http, method)(route.format(id=person_id), headers=bob.headers, **kwargs)
    assert response.status_code == 404, (route, response.body)
    person = api.http.get(f"/people/{person_id}", headers=alice.headers).json_body
    assert person["name"] == "Alice's friend" and person["face_count"] == 1


def test_other_users_people_faces_and_person_search_are_not_found(api, alices_person, services):
    alice, bob, person_id, face_id = alices_person
    assert api.http.get("/people", headers=bob.headers).json_body["people"] == []
    assert [p["person_id"] for p in api.http.get("/people", headers=alice.headers).json_body["people"]] == [person_id]
    bobs = services.people_store.create(bob.sub, "Bob's")["person_id"]
    for body in ({"target": bobs, "sources": [person_id]}, {"target": person_id, "sources": [bobs]}):
        response = api.http.post("/people/merge", headers=bob.headers, body=json.dumps(body))
        assert response.status_code == 404
    for body in ({"person_id": bobs}, {"person_id": None}, {"new_person": True}):
        response = api.http.put(f"/faces/{face_id}/person", headers=bob.headers, body=json.dumps(body))
        assert response.status_code == 404
    # Search by Alice's person id from Bob's side: not found, before any face model is asked
    # (the face client points at an address where nothing listens).
    services.__dict__["face_client"] = FaceClient(HttpTransport("http://127.0.0.1:9"), attempts=1)
    response = api.http.post("/search", headers=bob.headers, body=json.dumps({"person_id": person_id}))
    assert response.status_code == 404
    assert services.people_store.face(alice.sub, face_id)["person_id"] == person_id


def test_other_users_faces_cannot_be_drawn_or_removed(api, two_users, services):
    alice, bob, upload = two_users
    body = json.dumps({"box": [0, 0, 20, 20]})
    assert api.http.post(f"/photos/{upload['photo_id']}/faces", headers=bob.headers, body=body).status_code == 404
    assert api.http.delete(f"/faces/{upload['photo_id']}-000", headers=bob.headers).status_code == 404
    assert services.photo_store.list_faces(alice.sub, upload["photo_id"])


def test_other_users_photos_cannot_be_trashed_restored_purged_or_looked_up(api, two_users, services):
    alice, bob, upload = two_users
    ids = json.dumps({"photo_ids": [upload["photo_id"]]})
    assert api.http.post("/photos/trash", headers=bob.headers, body=ids).json_body["not_found"] == [upload["photo_id"]]
    assert api.http.post("/photos/status", headers=bob.headers, body=ids).json_body == {
        "photos": [],
        "not_found": [upload["photo_id"]],
    }
    assert api.http.get("/photos/months", headers=bob.headers).json_body == {"months": []}
    # Alice's photo in her trash: Bob can neither see, restore, purge nor empty it.
    assert api.http.delete(f"/photos/{upload['photo_id']}", headers=alice.headers).status_code == 204
    assert api.http.get("/trash", headers=bob.headers).json_body["photos"] == []
    assert api.http.post("/trash/restore", headers=bob.headers, body=ids).json_body["restored"] == []
    assert api.http.delete(f"/trash/{upload['photo_id']}", headers=bob.headers).status_code == 404
    assert api.http.delete("/trash", headers=bob.headers).json_body["purged"] == 0
    assert [p["photo_id"] for p in api.http.get("/trash", headers=alice.headers).json_body["photos"]] == [
        upload["photo_id"]
    ]
    assert services.photo_store.trashed_faces.count_documents({"owner": alice.sub}) == 1
