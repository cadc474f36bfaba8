"""The album routes against moto's S3 and the embedded store."""

import base64
import json
import time
from datetime import datetime

import pytest

from local_stack.aws import client
from tests.conftest import object_keys, post_to_s3, request_uploads

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
    services.store.replace_faces(
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
    services.store.update_photo(
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


def test_delete_photo_removes_objects_and_faces(api, make_user, services, aws_stack):
    user = make_user()
    upload, keep = request_uploads(api, user, [JPEG, JPEG])
    post_to_s3(upload, b"bytes")
    post_to_s3(keep, b"bytes")
    photo_id = upload["photo_id"]
    thumb = f"thumbs/{user.sub}/{photo_id}.jpg"
    client("s3", aws_stack.aws_endpoint_url).put_object(Bucket=aws_stack.bucket, Key=thumb, Body=b"t")
    services.store.update_photo(user.sub, photo_id, {"thumbnail_key": thumb})
    services.store.replace_faces(
        user.sub,
        photo_id,
        [
            {
                "face_id": f"{photo_id}-0",
                "face_index": 0,
                "box": [0, 0, 1, 1],
                "score": 1.0,
                "landmarks": [],
                "embedding": [1.0, 0.0],
                "model_version": "v",
            }
        ],
    )

    response = api.http.delete(f"/photos/{photo_id}", headers=user.headers)
    assert response.status_code == 204
    assert object_keys(aws_stack, user.sub) == [keep["fields"]["key"]]
    assert services.store.list_faces(user.sub, photo_id) == []
    assert api.http.get(f"/photos/{photo_id}", headers=user.headers).status_code == 404
    assert api.http.delete(f"/photos/{photo_id}", headers=user.headers).status_code == 404


def test_delete_me_removes_everything_of_that_user_only(api, make_user, services, aws_stack):
    user, other = make_user(), make_user()
    for who in (user, other):
        for upload in request_uploads(api, who, [JPEG, JPEG]):
            post_to_s3(upload, b"bytes")
    assert api.http.delete("/me", headers=user.headers).status_code == 204

    assert object_keys(aws_stack, user.sub) == []
    assert services.store.count_photos(user.sub) == 0
    assert len(object_keys(aws_stack, other.sub)) == 2
    assert services.store.count_photos(other.sub) == 2
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=aws_stack.user_pool_id, Username=user.email)


def test_errors_never_leak_stack_traces(api, make_user, services, monkeypatch):
    user = make_user()

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services.store, "list_photos", broken)
    response = api.http.get("/photos", headers=user.headers)
    assert response.status_code == 500
    assert response.json_body["error"] == "internal_error"
    assert "secret" not in response.body.decode() and "Traceback" not in response.body.decode()
