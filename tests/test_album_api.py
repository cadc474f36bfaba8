"""The album routes against moto's S3 and the embedded store."""

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.graph_fanout import graph_prefix
from local_stack.aws import client
from tests.conftest import object_keys, post_to_s3, request_uploads, stored_face

JPEG = {"filename": "beach.jpg", "content_type": "image/jpeg", "size": 2048}


def decode_policy(fields: dict) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_upload_request_presigns_a_post_per_file(api, make_user, aws_stack):
    user = make_user()
    files = [
        JPEG,
        {"filename": "x.png", "content_type": "image/png", "size": 10},
        {"filename": "w.webp", "content_type": "image/webp", "size": 10},
        {"filename": "IMG_1.HEIC", "content_type": "image/heic", "size": 10},
    ]
    uploads = request_uploads(api, user, files)
    assert len(uploads) == 4
    extensions = [u["fields"]["key"].rsplit(".", 1)[1] for u in uploads]
    assert extensions == ["jpg", "png", "webp", "heic"]
    for upload in uploads:
        assert (
            upload["fields"]["key"]
            == f"photos/{user.sub}/{upload['photo_id']}.{upload['fields']['key'].rsplit('.', 1)[1]}"
        )
        assert upload["expires_in"] == 900
    listed = api.http.get("/photos", headers=user.headers).json_body["photos"]
    assert {p["photo_id"] for p in listed} == {u["photo_id"] for u in uploads}
    assert all(p["status"] == "pending" for p in listed)


def test_presigned_policy_pins_key_type_and_size(api, make_user, settings):
    user = make_user()
    upload = request_uploads(api, user, [JPEG])[0]
    policy = decode_policy(upload["fields"])
    conditions = policy["conditions"]
    assert {"key": upload["fields"]["key"]} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, JPEG["size"]] in conditions  # the declared size: quotas count it
    assert {"bucket": settings.bucket} in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")).timestamp()
    assert 0 < expires - time.time() <= settings.upload_url_ttl + 5


def test_presigned_post_uploads_to_s3(api, make_user, aws_stack):
    user = make_user()
    upload = request_uploads(api, user, [JPEG])[0]
    assert post_to_s3(upload, b"\xff\xd8\xff\xe0 not really a jpeg").status_code == 204
    s3 = client("s3", aws_stack.aws_endpoint_url)
    head = s3.head_object(Bucket=aws_stack.bucket, Key=upload["fields"]["key"])
    assert head["ContentType"] == "image/jpeg"


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 400, "bad_request"),
        ({"files": []}, 400, "bad_request"),
        ({"files": "a.jpg"}, 400, "bad_request"),
        ({"files": [JPEG] * 51}, 400, "bad_request"),
        ({"files": [{"filename": "", "content_type": "image/jpeg", "size": 1}]}, 400, "bad_request"),
        ({"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 0}]}, 400, "bad_request"),
        ({"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": "12"}]}, 400, "bad_request"),
        ({"files": [{"filename": "a.bmp", "content_type": "image/bmp", "size": 1}]}, 415, "unsupported_media_type"),
        (
            {"files": [{"filename": "a.pdf", "content_type": "application/pdf", "size": 1}]},
            415,
            "unsupported_media_type",
        ),
        (
            {"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 26 * 1024 * 1024}]},
            413,
            "payload_too_large",
        ),
    ],
)
def test_bad_upload_requests(api, make_user, body, status, code):
    user = make_user()
    response = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps(body))
    assert response.status_code == status, response.body
    assert response.json_body["error"] == code
    assert response.json_body["message"]
    # Nothing half-created.
    assert api.http.get("/photos", headers=user.headers).json_body["photos"] == []


def test_malformed_json_and_wrong_content_type(api, make_user):
    user = make_user()
    response = api.http.post("/photos/uploads", headers=user.headers, body="{not json")
    assert response.status_code == 400
    assert response.json_body["error"] == "invalid_json"
    headers = dict(user.headers, **{"Content-Type": "text/plain"})
    response = api.http.post("/photos/uploads", headers=headers, body="hello")
    assert response.status_code == 415
    assert set(response.json_body) == {"error", "message"}


def test_too_many_pending_uploads(api, make_user, services, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(services.album, "settings", replace(services.settings, max_pending_uploads=3))
    user = make_user()
    request_uploads(api, user, [JPEG, JPEG])
    response = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": [JPEG, JPEG]}))
    assert response.status_code == 429
    assert response.json_body["error"] == "too_many_pending_uploads"


def test_a_cancelled_upload_is_forgotten_with_what_arrived(api, make_user, services, aws_stack):
    user, other = make_user(), make_user()
    kept, cancelled, arrived = request_uploads(api, user, [JPEG, JPEG, JPEG])
    before = services.photo_store.usage.of(user.sub)
    assert post_to_s3(arrived, b"\xff\xd8\xff partly").status_code == 204  # arrived, not yet indexed

    # Another user's upload, a made-up id: 404, and nothing changes.
    assert api.http.delete(f"/photos/uploads/{kept['photo_id']}", headers=other.headers).status_code == 404
    assert api.http.delete("/photos/uploads/not-an-id", headers=user.headers).status_code == 404
    for upload in (cancelled, arrived):
        response = api.http.delete(f"/photos/uploads/{upload['photo_id']}", headers=user.headers)
        assert response.status_code == 204, response.body

    listed = api.http.get("/photos", headers=user.headers).json_body["photos"]
    assert [p["photo_id"] for p in listed] == [kept["photo_id"]]  # no ghost tile
    assert arrived["fields"]["key"] not in object_keys(aws_stack, user.sub)
    after = services.photo_store.usage.of(user.sub)
    assert after["photos"] == before["photos"] - 2 and after["bytes"] == before["bytes"] - 2 * JPEG["size"]
    assert api.http.delete(f"/photos/uploads/{cancelled['photo_id']}", headers=user.headers).status_code == 404

    # A finished upload is a photo of the album: cancelling it is refused and loses nothing.
    services.photo_store.update_photo(user.sub, kept["photo_id"], {"status": "indexed"})
    response = api.http.delete(f"/photos/uploads/{kept['photo_id']}", headers=user.headers)
    assert response.status_code == 409 and response.json_body["error"] == "upload_finished"
    assert api.http.get(f"/photos/{kept['photo_id']}", headers=user.headers).status_code == 200


def test_the_album_in_numbers(api, make_user, services, settings):
    user, other = make_user(), make_user()
    empty = api.http.get("/me", headers=user.headers).json_body
    assert empty == {
        "photos": {"pending": 0, "indexed": 0, "failed": 0},
        "usage": {"photos": 0, "bytes": 0},
        "limits": {"photos": settings.max_photos_per_user, "bytes": settings.max_bytes_per_user},
    }
    ready, failed, waiting, trashed = request_uploads(api, user, [JPEG] * 4)
    request_uploads(api, other, [JPEG])  # another user's photo counts for them only
    services.photo_store.update_photo(user.sub, ready["photo_id"], {"status": "indexed"})
    services.photo_store.update_photo(user.sub, failed["photo_id"], {"status": "failed"})
    services.photo_store.update_photo(user.sub, trashed["photo_id"], {"status": "indexed"})
    api.http.delete(f"/photos/{trashed['photo_id']}", headers=user.headers)
    summary = api.http.get("/me", headers=user.headers).json_body
    assert summary["photos"] == {"pending": 1, "indexed": 1, "failed": 1}  # the trash is out of the album
    assert summary["usage"] == {"photos": 4, "bytes": 4 * JPEG["size"]}  # the quota counts it until purged


def test_listing_is_newest_first_with_cursor_pagination(api, make_user):
    user = make_user()
    created = []
    for _ in range(3):  # three requests: three distinct upload times
        created += [u["photo_id"] for u in request_uploads(api, user, [JPEG, JPEG])]
        time.sleep(0.005)
    seen, cursor = [], None
    while True:
        path = "/photos?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = api.http.get(path, headers=user.headers).json_body
        assert len(page["photos"]) <= 4
        seen += page["photos"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(p["photo_id"] for p in seen) == sorted(created)
    assert len(seen) == 6
    times = [p["uploaded_at"] for p in seen]
    assert times == sorted(times, reverse=True)
    assert [p["photo_id"] for p in seen[:2]] == sorted(created[4:], reverse=True)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=%%%", "cursor=bm90LWpzb24"])
def test_bad_listing_parameters(api, make_user, query):
    response = api.http.get(f"/photos?{query}", headers=make_user().headers)
    assert response.status_code == 400
    assert response.json_body["error"] in {"bad_request", "invalid_cursor"}


def test_photo_fields_and_faces(api, make_user, services):
    user = make_user()
    photo_id = request_uploads(api, user, [JPEG])[0]["photo_id"]
    services.photo_store.replace_faces(
        user.sub,
        photo_id,
        [
            {
                "face_id": f"{photo_id}-0",
                "face_index": 0,
                "box": [10, 20, 30, 40],
                "score": 0.99,
                "landmarks": [[1, 2]] * 5,
                "embedding": [0.1] * 128,
                "model_version": "test-1",
            },
        ],
    )
    services.photo_store.update_photo(
        user.sub,
        photo_id,
        {
            "status": "indexed",
            "face_count": 1,
            "width": 640,
            "height": 480,
            "thumbnail_key": f"thumbs/{user.sub}/{photo_id}.jpg",
        },
    )
    body = api.http.get(f"/photos/{photo_id}", headers=user.headers).json_body
    assert body["status"] == "indexed" and body["face_count"] == 1
    assert (body["width"], body["height"]) == (640, 480)
    assert body["faces"] == [
        {"face_id": f"{photo_id}-0", "box": [10, 20, 30, 40], "score": 0.99, "person_id": None, "assigned_by": None}
    ]
    assert f"thumbs/{user.sub}/{photo_id}.jpg" in body["thumbnail_url"]
    assert f"photos/{user.sub}/{photo_id}.jpg" in body["url"]
    assert "X-Amz-Signature" in body["url"]


def test_unknown_and_malformed_photo_ids_are_404(api, make_user):
    user = make_user()
    for photo_id in ("0" * 32, "not-an-id", "..%2F..%2Fetc"):
        for method in ("get", "delete"):
            response = getattr(api.http, method)(f"/photos/{photo_id}", headers=user.headers)
            assert response.status_code == 404, (method, photo_id)
            assert response.json_body["error"] == "not_found"


def _photo_with_face(api, user, services, aws_stack, files=(JPEG, JPEG)):
    """Uploads; the first photo gets a thumbnail and a face (as the indexer would write them)."""
    uploads = request_uploads(api, user, list(files))
    for upload in uploads:
        post_to_s3(upload, b"bytes")
    photo_id = uploads[0]["photo_id"]
    thumb = f"thumbs/{user.sub}/{photo_id}.jpg"
    client("s3", aws_stack.aws_endpoint_url).put_object(Bucket=aws_stack.bucket, Key=thumb, Body=b"t")
    services.photo_store.update_photo(user.sub, photo_id, {"thumbnail_key": thumb})
    services.photo_store.replace_faces(user.sub, photo_id, [stored_face(photo_id)])
    return uploads


def _album_ids(api, user) -> set:
    return {p["photo_id"] for p in api.http.get("/photos", headers=user.headers).json_body["photos"]}


def test_deleting_moves_a_photo_to_the_trash_and_restoring_brings_it_back_with_its_faces(
    api, make_user, services, aws_stack
):
    user = make_user()
    upload, keep = _photo_with_face(api, user, services, aws_stack)
    photo_id = upload["photo_id"]
    before = object_keys(aws_stack, user.sub)

    assert api.http.delete(f"/photos/{photo_id}", headers=user.headers).status_code == 204
    assert _album_ids(api, user) == {keep["photo_id"]}  # out of the album
    assert services.photo_store.face_vectors(user.sub, "v")[0] == []  # out of search and people
    assert object_keys(aws_stack, user.sub) == before  # nothing deleted yet
    shown = api.http.get(f"/photos/{photo_id}", headers=user.headers).json_body
    trashed_at = datetime.fromisoformat(shown["trashed_at"])
    assert (datetime.fromisoformat(shown["purge_at"]) - trashed_at).days == 30
    trash = api.http.get("/trash", headers=user.headers).json_body
    assert [p["photo_id"] for p in trash["photos"]] == [photo_id] and trash["next_cursor"] is None
    # Idempotent: trashing it again (a retried request) keeps its date.
    assert api.http.delete(f"/photos/{photo_id}", headers=user.headers).status_code == 204
    assert api.http.get(f"/photos/{photo_id}", headers=user.headers).json_body["trashed_at"] == shown["trashed_at"]

    body = json.dumps({"photo_ids": [photo_id, "f" * 32]})
    restored = api.http.post("/trash/restore", headers=user.headers, body=body).json_body
    assert restored == {"restored": [photo_id], "not_found": ["f" * 32]}
    assert _album_ids(api, user) == {photo_id, keep["photo_id"]}
    assert [f["face_id"] for f in services.photo_store.face_vectors(user.sub, "v")[0]] == [f"{photo_id}-000"]
    assert api.http.get(f"/photos/{photo_id}", headers=user.headers).json_body["trashed_at"] is None
    assert api.http.get("/trash", headers=user.headers).json_body["photos"] == []


def test_a_photo_in_the_trash_is_deleted_for_good_on_request_with_its_objects_and_faces(
    api, make_user, services, aws_stack
):
    user = make_user()
    upload, keep = _photo_with_face(api, user, services, aws_stack)
    photo_id = upload["photo_id"]
    # Only what is in the trash can be deleted for good.
    response = api.http.delete(f"/trash/{photo_id}", headers=user.headers)
    assert response.status_code == 409 and response.json_body["error"] == "not_in_trash"
    used = services.photo_store.usage.of(user.sub)

    api.http.delete(f"/photos/{photo_id}", headers=user.headers)
    assert services.photo_store.usage.of(user.sub) == used  # the trash still counts against the quota
    assert api.http.delete(f"/trash/{photo_id}", headers=user.headers).status_code == 204
    assert object_keys(aws_stack, user.sub) == [keep["fields"]["key"]]
    assert services.photo_store.list_faces(user.sub, photo_id) == []
    assert services.photo_store.trashed_faces.count_documents({"owner": user.sub}) == 0
    assert services.photo_store.usage.of(user.sub) == {"photos": 1, "bytes": JPEG["size"]}
    assert api.http.get(f"/photos/{photo_id}", headers=user.headers).status_code == 404
    assert api.http.delete(f"/trash/{photo_id}", headers=user.headers).status_code == 404


def test_emptying_the_trash_and_the_scheduled_purge_delete_what_is_in_it(api, make_user, services, aws_stack):
    user, other = make_user(), make_user()
    uploads = _photo_with_face(api, user, services, aws_stack, files=[JPEG] * 4)
    others = _photo_with_face(api, other, services, aws_stack)
    ids = [u["photo_id"] for u in uploads]
    body = json.dumps({"photo_ids": ids[:3] + ["not-an-id"]})
    assert api.http.post("/photos/trash", headers=user.headers, body=body).json_body == {
        "trashed": ids[:3],
        "not_found": ["not-an-id"],
    }
    api.http.delete(f"/photos/{others[0]['photo_id']}", headers=other.headers)
    # Emptying purges this user's trash only.
    assert api.http.delete("/trash", headers=user.headers).json_body == {"purged": 3, "remaining": False}
    assert _album_ids(api, user) == {ids[3]}
    assert {k.rsplit("/", 1)[1].split(".")[0] for k in object_keys(aws_stack, user.sub)} == {ids[3]}
    assert len(api.http.get("/trash", headers=other.headers).json_body["photos"]) == 1

    # The schedule purges what was trashed more than TRASH_DAYS ago, and nothing younger.
    api.http.delete(f"/photos/{ids[3]}", headers=user.headers)
    long_ago = datetime(2020, 1, 1)
    services.photo_store.photos.update_one(
        {"owner": other.sub, "photo_id": others[0]["photo_id"]}, {"$set": {"trashed_at": long_ago}}
    )
    result = api.lambda_.invoke("purge_trash", api.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert result.payload == {"purged": 1, "abandoned_uploads": 0}
    assert services.photo_store.get_photo(other.sub, others[0]["photo_id"]) is None
    assert object_keys(aws_stack, other.sub) == [others[1]["fields"]["key"]]
    assert services.photo_store.get_photo(user.sub, ids[3])["trashed_at"] is not None  # trashed just now: kept


def test_trash_requests_are_checked(api, make_user):
    user = make_user()
    for body in ({}, {"photo_ids": []}, {"photo_ids": "x"}, {"photo_ids": [1]}, {"photo_ids": ["a"] * 101}):
        for route in ("/photos/trash", "/trash/restore", "/photos/status"):
            response = api.http.post(route, headers=user.headers, body=json.dumps(body))
            assert response.status_code == 400 and "photo_ids" in response.json_body["message"], (route, body)


def test_batch_status_answers_many_photos_in_one_call(api, make_user):
    user, other = make_user(), make_user()
    mine = request_uploads(api, user, [JPEG, JPEG])
    theirs = request_uploads(api, other, [JPEG])[0]
    ids = [mine[1]["photo_id"], theirs["photo_id"], mine[0]["photo_id"]]
    answer = api.http.post("/photos/status", headers=user.headers, body=json.dumps({"photo_ids": ids})).json_body
    assert [p["photo_id"] for p in answer["photos"]] == [ids[0], ids[2]]
    assert all(p["status"] == "pending" for p in answer["photos"])
    assert answer["not_found"] == [theirs["photo_id"]]  # another user's photo is nobody's


def test_delete_me_removes_everything_of_that_user_only(api, make_user, services, aws_stack):
    user, other = make_user(), make_user()
    for who in (user, other):
        for upload in request_uploads(api, who, [JPEG, JPEG]):
            post_to_s3(upload, b"bytes")
        # What search keeps of theirs: a key photo counted against the hour, and its analysis.
        assert services.album.rates.take(who.sub, "key_photo", datetime(2026, 1, 1), limit=5)
        services.album.key_faces.save(who.sub, "key:1", {"faces": []}, timedelta(minutes=5))
        # A large album's regrouping in flight: its graph holds their faces' vectors.
        services.object_storage.put_bytes(graph_prefix(who.sub, "0" * 32) + "vectors.f32", b"vectors")
    assert api.http.delete("/me", headers=user.headers).status_code == 204

    assert object_keys(aws_stack, user.sub) == []
    assert services.photo_store.count_photos(user.sub) == 0
    assert len(object_keys(aws_stack, other.sub)) == 3
    assert services.photo_store.count_photos(other.sub) == 2
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws_stack.user_pool_id, Username=user.email)
    # No store keeps a record of theirs, but the tombstone that refuses their tokens and the random
    # change token that voids warm containers' caches of their album.
    database = services.photo_store.db
    kept = {name: _records_of(database[name], user.sub) for name in database.list_collection_names()}
    assert {name: n for name, n in kept.items() if n} == {"tombstones": 1, "owner_versions": 1}
    assert [_records_of(database[name], other.sub) for name in ("usage", "rates", "key_faces")] == [1, 1, 1]


def _records_of(collection, sub: str) -> int:
    """Documents of ``collection`` that belong to ``sub``: by owner, by id, or by an id it starts."""
    return sum(1 for doc in collection.find({}) if doc.get("owner") == sub or str(doc.get("_id", "")).startswith(sub))


def test_errors_never_leak_stack_traces(api, make_user, services, monkeypatch):
    user = make_user()

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services.photo_store, "list_photos", broken)
    response = api.http.get("/photos", headers=user.headers)
    assert response.status_code == 500
    assert response.json_body["error"] == "internal_error"
    assert "secret" not in response.body.decode() and "Traceback" not in response.body.decode()


def test_the_local_stacks_schedule_runs_the_trash_purge(services):
    """The local stack calls the scheduled handler with EventBridge's event (it once lacked fields
    Chalice reads, so every tick failed and the trash was never purged locally)."""
    import app as app_module
    from local_stack.pump import Schedule

    services.photo_store.add_photos(
        [{"owner": "o", "photo_id": "a" * 32, "key": None, "status": "indexed", "trashed_at": datetime(2020, 1, 1)}]
    )
    assert Schedule(app_module.purge_trash, every_s=3600).tick() == {"purged": 1, "abandoned_uploads": 0}
    assert services.photo_store.get_photo("o", "a" * 32) is None


def test_uploads_never_made_leave_no_ghost_tile_or_count(api, make_user, settings, monkeypatch):
    """Asked for, never uploaded (a connection that died): gone from the month counts when the form
    expires, and from everyone's album by the schedule, whether or not its owner comes back."""
    import app as app_module
    from tests.test_hardening import with_settings

    short = with_settings(monkeypatch, settings, upload_url_ttl=60, pending_grace=0)
    user, away = make_user(), make_user()
    for who in (user, away):
        request_uploads(api, who, [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 100}] * 2)
    assert sum(m["count"] for m in api.http.get("/photos/months", headers=user.headers).json_body["months"]) == 2
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=61)
    short.photo_store.photos.update_many({}, {"$set": {"uploaded_at": long_ago}})
    assert api.http.get("/photos/months", headers=user.headers).json_body["months"] == []
    assert short.photo_store.count_photos(away.sub, status="pending") == 2  # not signed in since
    result = api.lambda_.invoke("purge_trash", api.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert result.payload == {"purged": 0, "abandoned_uploads": 2}
    assert short.photo_store.count_photos(away.sub, status="pending") == 0
    assert short.photo_store.usage.of(away.sub)["photos"] == 0  # their quota freed too
    assert app_module.services is short
