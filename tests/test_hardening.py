"""Hostile input, deletion races and abuse, through the real API, moto's S3/SQS/Cognito and the
real face endpoint: nothing crashes, nothing leaks, nothing is left behind."""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from PIL import Image

import app as app_module
from chalicelib.clock import Deadline
from chalicelib.edge.request_models import FileToUpload, valid_unicode
from chalicelib.errors import Invalid, RateLimited
from chalicelib.face_client import FaceClient, FaceServiceError
from chalicelib.records import User
from chalicelib.services import Services
from chalicelib.stores.vector_index import ExactIndex
from local_stack.aws import client, sign_in
from tests.conftest import PASSWORD, object_keys, post_to_s3, request_uploads, stored_face
from tests.face_fixtures import FACEDATA, needs_facedata
from tests.test_indexing import drain, face_endpoint, indexing, photo, upload  # noqa: F401  (fixtures)

CRASHER = Path(__file__).resolve().parent / "fuzz_cases" / "heic-exif-item-type-segfault.heic"
SINGLE = FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg" if FACEDATA else None
JPEG = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 2048}


# Untrusted images ------------------------------------------------------------------
@needs_facedata
def test_the_crashing_heic_becomes_a_failed_photo_and_a_4xx_search(api, make_user, indexing):
    _, pump = indexing
    user = make_user()
    photo_id = upload(api, user, CRASHER.read_bytes(), "image/heic")
    drain(pump)
    body = photo(api, user, photo_id)
    assert body["status"] == "failed" and "not a readable image" in body["error"]
    assert pump.failed == 0  # handled, not retried into the dead-letter queue
    response = api.http.post(
        "/search",
        headers=user.headers,
        body=json.dumps({"image_base64": base64.b64encode(CRASHER.read_bytes()).decode()}),
    )
    assert response.status_code == 400 and response.json_body["error"] == "invalid_key_photo"


def with_settings(monkeypatch, settings, **changes) -> Services:
    """The app's services with other settings; the face endpoint is named (the search routes
    need one) but never reached by the tests that use this."""
    changed = Services(
        replace(settings, face_endpoint_url=settings.face_endpoint_url or "http://127.0.0.1:9", **changes)
    )
    monkeypatch.setattr(app_module, "services", changed)
    return changed


@pytest.mark.parametrize("path", ["/search", "/photos/uploads", "/search/uploads"])
def test_deeply_nested_json_is_a_400(api, make_user, settings, monkeypatch, path):
    with_settings(monkeypatch, settings)
    user = make_user()
    response = api.http.post(path, headers=user.headers, body="[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400 and response.json_body["error"] == "invalid_json"


# Deletion races ----------------------------------------------------------------------
class DeletingTransport:
    """The real endpoint, but the photo is deleted through the API while the call is in flight."""

    def __init__(self, real, on_call):
        self.real, self.on_call = real, on_call

    def invoke(self, body: bytes, timeout: float) -> bytes:
        self.on_call()
        return self.real.invoke(body, timeout)


@needs_facedata
@pytest.mark.parametrize("deletion", ["photo", "account"])
def test_deleting_while_indexing_leaves_no_faces_or_objects(api, make_user, indexing, aws_stack, deletion):
    services, pump = indexing
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")

    def delete_now():
        # A photo is deleted for good from the trash (a trashed photo under indexing: test_indexing).
        paths = [f"/photos/{photo_id}", f"/trash/{photo_id}"] if deletion == "photo" else ["/me"]
        for path in paths:
            assert api.http.delete(path, headers=user.headers).status_code == 204

    services.face_client.transport = DeletingTransport(services.face_client.transport, delete_now)
    drain(pump)
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 0
    assert object_keys(aws_stack, user.sub) == []  # no thumbnail written after the deletion
    assert services.photo_store.photos.count_documents({"owner": user.sub}) == 0


@needs_facedata
def test_the_sweep_removes_what_no_photo_owns(api, make_user, indexing, aws_stack):
    services, pump = indexing
    user = make_user()
    kept = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    s3 = client("s3", aws_stack.aws_endpoint_url)
    ghost = "f" * 32  # as an indexer that crashed between its writes would leave them
    s3.put_object(Bucket=aws_stack.bucket, Key=f"thumbs/{user.sub}/{ghost}.jpg", Body=b"x")
    services.photo_store.faces.insert_one(
        dict(
            services.photo_store.faces.find_one({"owner": user.sub}, {"_id": 0}), photo_id=ghost, face_id=f"{ghost}-000"
        )
    )
    assert services.album.sweep(user.sub) == {"faces": 1, "objects": 1, "abandoned_uploads": 0}
    assert sorted(object_keys(aws_stack, user.sub)) == sorted(
        [f"photos/{user.sub}/{kept}.jpg", f"thumbs/{user.sub}/{kept}.jpg"]
    )
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 1


# A deleted account ----------------------------------------------------------------------
def test_a_deleted_account_cannot_use_its_tokens_and_deleting_again_is_a_204(api, make_user, aws_stack):
    user = make_user()
    tokens = sign_in(aws_stack, user.email, PASSWORD)
    assert api.http.delete("/me", headers=user.headers).status_code == 204
    for method, path, body in (("post", "/photos/uploads", {"files": [JPEG]}), ("get", "/photos", None)):
        response = getattr(api.http, method)(path, headers=user.headers, body=json.dumps(body) if body else b"")
        assert response.status_code == 401 and response.json_body["error"] == "account_deleted"
    assert api.http.delete("/me", headers=user.headers).status_code == 204  # idempotent
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    with pytest.raises(cognito.exceptions.ClientError):  # the refresh token no longer works
        cognito.initiate_auth(
            ClientId=aws_stack.user_pool_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": tokens["RefreshToken"]},
        )


# Lifecycle -----------------------------------------------------------------------------
def test_abandoned_uploads_expire_and_free_their_slots(api, make_user, services, settings, monkeypatch, aws_stack):
    limited = with_settings(monkeypatch, settings, max_pending_uploads=2, upload_url_ttl=60, pending_grace=0)
    user = make_user()
    abandoned, arrived = request_uploads(api, user, [JPEG, JPEG])
    assert post_to_s3(arrived, b"\xff\xd8 any bytes", "a.jpg").status_code == 204  # its indexing is late
    refused = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": [JPEG]}))
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    old = limited.photo_store.photos.find_one({"owner": user.sub, "photo_id": abandoned["photo_id"]})["uploaded_at"]
    limited.photo_store.photos.update_many({"owner": user.sub}, {"$set": {"uploaded_at": old - timedelta(seconds=61)}})
    assert len(request_uploads(api, user, [JPEG])) == 1  # the abandoned one expired
    listed = {p["photo_id"] for p in api.http.get("/photos", headers=user.headers).json_body["photos"]}
    assert abandoned["photo_id"] not in listed and arrived["photo_id"] in listed  # the uploaded one waits
    assert limited.photo_store.usage.of(user.sub)["photos"] == 2


def test_the_search_cache_never_serves_faces_of_a_deleted_album(services):
    photo_store, index = services.photo_store, ExactIndex(services.photo_store)
    photo_store.replace_faces("owner", "a" * 32, [stored_face("a" * 32, box=(0, 0, 9, 9))])
    assert len(index.nearest("owner", "v", [1.0, 0.0], 10, 0.5)) == 1
    photo_store.delete_owner("owner")
    for photo_id in ("b" * 32, "c" * 32):  # two writes: with a counter reset to 0, the cached value came back
        photo_store.replace_faces("other", photo_id, [])
        photo_store.versions.bump("owner")
    assert index.nearest("owner", "v", [1.0, 0.0], 10, 0.5) == []


# Quotas and rates ------------------------------------------------------------------------
def test_storage_quota_is_a_429_with_the_reason(api, make_user, settings, monkeypatch):
    with_settings(monkeypatch, settings, max_photos_per_user=3, max_bytes_per_user=5000)
    user = make_user()
    request_uploads(api, user, [JPEG, JPEG])
    over_bytes = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": [JPEG]}))
    assert over_bytes.status_code == 429 and over_bytes.json_body["error"] == "quota_exceeded"
    small = dict(JPEG, size=100)
    request_uploads(api, user, [small])
    over_count = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": [small]}))
    assert over_count.status_code == 429 and "3 photos" in over_count.json_body["message"]
    listed = api.http.get("/photos", headers=user.headers).json_body["photos"]
    assert api.http.delete(f"/photos/{listed[0]['photo_id']}", headers=user.headers).status_code == 204
    still_full = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": [small]}))
    assert still_full.status_code == 429  # the trash counts until it is emptied
    assert api.http.delete("/trash", headers=user.headers).json_body["purged"] == 1
    request_uploads(api, user, [small])  # deleting for good makes room


def test_key_photos_are_rate_limited_per_hour(api, make_user, settings, monkeypatch):
    with_settings(monkeypatch, settings, key_photos_per_hour=2)
    user, other = make_user(), make_user()
    for _ in range(2):
        assert api.http.post("/search/uploads", headers=user.headers, body=json.dumps(JPEG)).status_code == 201
    refused = api.http.post("/search/uploads", headers=user.headers, body=json.dumps(JPEG))
    assert refused.status_code == 429 and refused.json_body["error"] == "key_photo_rate"
    assert 0 < int(refused.headers["Retry-After"]) <= 3601
    assert api.http.post("/search/uploads", headers=other.headers, body=json.dumps(JPEG)).status_code == 201


class CountingTransport:
    def __init__(self, real):
        self.real, self.calls = real, 0

    def invoke(self, body: bytes, timeout: float) -> bytes:
        self.calls += 1
        return self.real.invoke(body, timeout)


@needs_facedata
def test_a_keys_faces_are_analysed_once_for_all_its_pages(api, make_user, indexing):
    services, pump = indexing
    user = make_user()
    for quality in (None, 90, 80):  # three photos of one face (the same bytes would be one photo)
        data = SINGLE.read_bytes()
        if quality:
            buffer = io.BytesIO()
            Image.open(SINGLE).save(buffer, "JPEG", quality=quality)
            data = buffer.getvalue()
        upload(api, user, data, "image/jpeg")
    drain(pump)
    counting = services.face_client.transport = CountingTransport(services.face_client.transport)
    query = {"image_base64": base64.b64encode(SINGLE.read_bytes()).decode(), "limit": 1}
    pages = []
    while True:
        body = api.http.post("/search", headers=user.headers, body=json.dumps(query)).json_body
        pages.append(body["results"])
        if not body["next_cursor"]:
            break
        query["cursor"] = body["next_cursor"]
    # The key's own bytes are one of the three photos: not a result, the other two are, a page each.
    assert [len(p) for p in pages] == [1, 1] and counting.calls == 1


@needs_facedata
def test_search_keys_have_a_lower_pixel_cap(api, make_user, indexing, monkeypatch):
    services, _ = indexing
    with_settings(monkeypatch, services.settings, key_max_pixels=10_000)
    user = make_user()
    response = api.http.post(
        "/search",
        headers=user.headers,
        body=json.dumps({"image_base64": base64.b64encode(SINGLE.read_bytes()).decode()}),
    )
    assert response.status_code == 413 and "pixels" in response.json_body["message"]


# Time limits ------------------------------------------------------------------------------
class SlowTransport:
    def __init__(self, seconds: float):
        self.seconds, self.calls, self.timeouts = seconds, 0, []

    def invoke(self, body: bytes, timeout: float) -> bytes:
        self.calls += 1
        self.timeouts.append(timeout)
        time.sleep(min(self.seconds, timeout))
        raise FaceServiceError("the face service timed out", retriable=True)


def test_face_calls_fit_the_callers_deadline():
    slow = SlowTransport(10)
    face_client = FaceClient(slow, attempts=4, timeout=30, min_attempt=0.2, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(FaceServiceError) as caught:
        face_client.analyze_bytes(b"x", Deadline(1.0))
    assert caught.value.retriable
    assert time.monotonic() - started < 1.5  # four attempts of 30 s would take two minutes
    assert all(t <= 1.0 for t in slow.timeouts)


class _Context:
    def __init__(self, millis: int):
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_deadlines_come_from_the_lambdas_remaining_time():
    assert Deadline.for_lambda(_Context(120_000), reserve=15).left() == pytest.approx(105, abs=0.5)
    assert Deadline.for_lambda(_Context(30_000), cap=25).left() == pytest.approx(25, abs=0.5)
    assert Deadline.for_lambda(None, cap=25).left() == pytest.approx(25, abs=0.5)


def test_quotas_count_photos_held_from_before_quotas(services):
    """A user whose photos predate quotas starts from what the records hold, not from zero."""
    photo_store = services.photo_store
    photo_store.add_photos(
        [
            {"owner": "old", "photo_id": f"{i:032x}", "declared_size": 1000, "status": "indexed", "uploaded_at": None}
            for i in range(3)
        ]
    )
    usage, held = photo_store.usage, functools.partial(photo_store.held_usage, "old")
    assert not usage.reserve("old", 1, 1000, max_photos=3, max_bytes=10_000, held=held)  # 3 held + 1 > 3
    assert usage.of("old") == {"photos": 3, "bytes": 3000}
    assert usage.reserve("old", 1, 1000, max_photos=4, max_bytes=10_000, held=held)
    photo_store.delete_photo("old", f"{0:032x}")
    assert photo_store.usage.of("old") == {"photos": 3, "bytes": 3000}


def test_sagemaker_calls_use_a_client_with_the_attempts_timeout(settings):
    """botocore sets read timeouts per client: one client per whole-second timeout, reused."""
    services = Services(replace(settings, face_endpoint_url=None, face_endpoint_name="faces"))
    transport = services.face_client.transport
    seven = transport.runtime_for(7)
    assert seven.meta.config.read_timeout == 7 and seven.meta.config.retries["total_max_attempts"] == 1
    assert transport.runtime_for(7) is seven and transport.runtime_for(3).meta.config.read_timeout == 3


# Counted caps that race -------------------------------------------------------------------
def test_parallel_upload_requests_cannot_pass_the_pending_cap_together(settings, monkeypatch):
    """Four requests of 50 files each, at 950 pending of 1,000, as four Lambda containers over one
    store: one gets its forms, the others a 429, and 1,000 are pending, not 1,150."""
    capped = replace(settings, max_pending_uploads=1000, max_files_per_request=50)
    containers = [Services(capped) for _ in range(4)]
    owner = "racer"
    containers[0].photo_store.add_photos(
        [
            {
                "owner": owner,
                "photo_id": f"{i:032x}",
                "key": f"photos/{owner}/{i:032x}.jpg",
                "status": "pending",
                "declared_size": 1,
                "uploaded_at": datetime.now(UTC).replace(tzinfo=None),
            }
            for i in range(950)
        ]
    )
    barrier = threading.Barrier(4)
    for svc in containers:  # widen the window between counting and inserting, as a slow store would
        counted = svc.photo_store.count_photos
        monkeypatch.setattr(
            svc.photo_store, "count_photos", lambda *a, _c=counted, **k: (_c(*a, **k), time.sleep(0.3))[0]
        )

    def ask(svc):
        barrier.wait()
        try:
            return len(svc.album.create_uploads(User(owner), [FileToUpload("a.jpg", "image/jpeg", 10)] * 50))
        except RateLimited as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, containers))
    assert sorted(answers, key=str) == [50] + ["too_many_pending_uploads"] * 3
    assert containers[0].photo_store.count_photos(owner, status="pending") == 1000


def test_a_lease_left_by_a_dead_holder_lapses(services):
    leases = services.lease_store
    assert leases.take("o|uploads", seconds=0.05) is not None
    assert leases.take("o|uploads", seconds=30) is None  # held
    time.sleep(0.1)
    token = leases.take("o|uploads", seconds=30)  # lapsed: taken over
    assert token is not None
    leases.release("o|uploads", "someone else's token")
    assert leases.take("o|uploads", seconds=30) is None  # only its holder releases it
    leases.release("o|uploads", token)
    assert leases.take("o|uploads", seconds=30) is not None


# Strings that are not Unicode --------------------------------------------------------------
LONE_SURROGATE = "\ud800"
# Every route that takes a JSON body, with a body whose every string holds a lone surrogate in turn.
BODY_ROUTES = [
    ("post", "/photos/uploads", {"files": [dict(JPEG, filename=LONE_SURROGATE)]}),
    ("post", "/photos/uploads", {"files": [dict(JPEG, content_type=LONE_SURROGATE)]}),
    ("post", "/photos/uploads", {"files": [dict(JPEG, **{LONE_SURROGATE: 1})]}),
    ("post", "/photos/status", {"photo_ids": [LONE_SURROGATE]}),
    ("post", "/photos/trash", {"photo_ids": ["a" * 32, LONE_SURROGATE]}),
    ("post", "/trash/restore", {"photo_ids": [LONE_SURROGATE]}),
    ("post", "/search/uploads", dict(JPEG, filename="key" + LONE_SURROGATE)),
    ("post", "/search", {"key_id": LONE_SURROGATE}),
    ("post", "/search", {"person_id": LONE_SURROGATE}),
    ("post", "/search", {"photo_id": "a" * 32, "face_id": LONE_SURROGATE}),
    ("post", "/search", {"image_base64": LONE_SURROGATE}),
    ("post", "/people/merge", {"target": LONE_SURROGATE, "sources": ["b"]}),
    ("patch", "/people/{id}", {"name": "Ji" + LONE_SURROGATE + "eun"}),
    ("post", "/people/{id}/suggestions", {"answers": [{"face_id": LONE_SURROGATE, "accept": True}]}),
    ("post", "/photos/{id}/faces", {"box": [1, 2, 3, 4], "note": LONE_SURROGATE}),
    ("put", "/faces/{id}/person", {"new_person": True, "name": LONE_SURROGATE}),
    ("put", "/faces/{id}/person", {"person_id": LONE_SURROGATE}),
]


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
def test_strings_that_are_not_unicode_are_a_400_on_every_body_route(
    api, make_user, settings, monkeypatch, method, path, body
):
    with_settings(monkeypatch, settings)
    user = make_user()
    response = getattr(api.http, method)(path.replace("{id}", "a" * 32), headers=user.headers, body=json.dumps(body))
    assert response.status_code == 400, response.body
    assert response.json_body["error"] == "invalid_unicode"


def test_every_body_route_is_fuzzed_with_a_lone_surrogate():
    described = yaml.safe_load((Path(app_module.__file__).parent / "chalicelib" / "edge" / "openapi.yaml").read_text())
    with_bodies = {
        (method, path.replace("{photo_id}", "{id}").replace("{person_id}", "{id}").replace("{face_id}", "{id}"))
        for path, item in described["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    assert with_bodies == {(method, path) for method, path, _ in BODY_ROUTES}


def test_a_surrogate_encoded_in_the_url_is_no_500(api, make_user):
    """HTTP carries bytes: UTF-8's encoding of a surrogate is not UTF-8, and arrives replaced."""
    user = make_user()
    for path in ("/people?limit=%ED%A0%80", "/photos?cursor=%ED%A0%80", "/people/%ED%A0%80"):
        assert api.http.get(path, headers=user.headers).status_code in (400, 404)
    with pytest.raises(Invalid, match="query.cursor holds text that is not valid Unicode"):
        valid_unicode({"cursor": LONE_SURROGATE}, "query")


# Tokens whose audience is a list -----------------------------------------------------------
@pytest.mark.parametrize("claim", ["aud", "client_id"])
def test_a_token_whose_audience_is_a_list_is_a_401(api, make_user, aws_stack, claim):
    from tests.test_auth import claims_of, sign_with_pool_key

    user = make_user()
    claims = claims_of(user.id_token if claim == "aud" else user.access_token)
    claims[claim] = [aws_stack.user_pool_client_id]
    response = api.http.get("/photos", headers={"Authorization": f"Bearer {sign_with_pool_key(claims)}"})
    assert response.status_code == 401 and response.json_body["error"] == "unauthorized"


# Signing out everywhere ------------------------------------------------------------------
def _refresh_works(aws_stack, refresh_token: str) -> bool:
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    try:
        cognito.initiate_auth(
            ClientId=aws_stack.user_pool_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token},
        )
    except cognito.exceptions.ClientError:
        return False
    return True


def _refused(api, token: str) -> str | None:
    response = api.http.get("/photos", headers={"Authorization": f"Bearer {token}"})
    return response.json_body["error"] if response.status_code == 401 else None


def test_signing_out_everywhere_voids_every_token_issued_before(api, make_user, aws_stack):
    user, other = make_user(), make_user()
    second_device = sign_in(aws_stack, user.email, PASSWORD)
    assert api.http.post("/me/sign-out", headers=user.headers).status_code == 204
    for token in (user.id_token, user.access_token, second_device["IdToken"], second_device["AccessToken"]):
        assert _refused(api, token) == "token_revoked"
    assert not _refresh_works(aws_stack, second_device["RefreshToken"])
    assert _refused(api, other.id_token) is None  # nobody else is signed out
    time.sleep(1.1)  # ``iat`` has whole seconds: the revocation's own second is refused too
    fresh = sign_in(aws_stack, user.email, PASSWORD)
    assert _refused(api, fresh["IdToken"]) is None


def test_disabling_a_user_voids_their_tokens(api, make_user, aws_stack, settings):
    """The operators' command, with the stage's settings (here the test stack's)."""
    from memstudio.ops import disable_user

    user = make_user()
    assert disable_user(settings, user.email) == user.sub
    assert _refused(api, user.id_token) == "token_revoked"
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    assert cognito.admin_get_user(UserPoolId=aws_stack.user_pool_id, Username=user.email)["Enabled"] is False
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        sign_in(aws_stack, user.email, PASSWORD)


def test_a_password_reset_voids_the_tokens_issued_before_it(api, make_user, aws_stack):
    """Cognito's post-confirmation trigger, with the event Cognito sends after ConfirmForgotPassword."""
    user = make_user()
    event = {
        "version": "1",
        "triggerSource": "PostConfirmation_ConfirmForgotPassword",
        "userPoolId": aws_stack.user_pool_id,
        "userName": user.email,
        "request": {"userAttributes": {"sub": user.sub, "email": user.email}},
        "response": {},
    }
    signed_up = dict(event, triggerSource="PostConfirmation_ConfirmSignUp")
    assert app_module.cognito_post_confirmation(signed_up, None) == signed_up
    assert _refused(api, user.id_token) is None  # a confirmed sign-up ends nothing
    assert app_module.cognito_post_confirmation(event, None) == event
    assert _refused(api, user.id_token) == "token_revoked"


def test_a_deleted_accounts_revocation_goes_with_it(api, make_user, services):
    user = make_user()
    assert api.http.post("/me/sign-out", headers=user.headers).status_code == 204
    assert services.account_store.tokens_revoked_before(user.sub) is not None
    fresh = services.verifier  # the deletion is repeated with the (revoked) token: allowed
    services.accounts.delete(User(user.sub, username=user.email))
    assert services.account_store.tokens_revoked_before(user.sub) is None
    assert fresh.is_deleted(user.sub)  # the tombstone refuses its tokens from then on


# Behind the presigned form ------------------------------------------------------------------
def _tampered_post(upload: dict, data: bytes, **fields) -> int:
    form = dict(upload["fields"], **fields)
    return requests.post(upload["url"], data=form, files={"file": ("p.jpg", data)}, timeout=30).status_code


@needs_facedata
def test_an_object_posted_to_another_users_key_is_removed_and_their_upload_still_lands(api, make_user, indexing):
    _, pump = indexing
    victim, attacker = make_user(), make_user()
    theirs = request_uploads(api, victim, [dict(JPEG, size=len(SINGLE.read_bytes()))])[0]
    mine = request_uploads(api, attacker, [dict(JPEG, size=100_000)])[0]
    victim_key = theirs["fields"]["key"]
    # The attacker's form, pointed at the victim's key, with the victim's owner and id claimed too.
    forged = {"key": victim_key, "x-amz-meta-owner": victim.sub, "x-amz-meta-photo-id": theirs["photo_id"]}
    assert _tampered_post(mine, b"\xff\xd8 not the victim's photo", **forged) == 204  # moto takes it
    drain(pump)
    assert photo(api, victim, theirs["photo_id"])["status"] == "pending"  # untouched, still waiting
    assert post_to_s3(theirs, SINGLE.read_bytes()).status_code == 204
    drain(pump)
    assert photo(api, victim, theirs["photo_id"])["status"] == "indexed"


def test_an_object_larger_than_declared_is_a_failed_photo(api, make_user, indexing):
    _, pump = indexing
    user = make_user()
    upload = request_uploads(api, user, [dict(JPEG, size=10)])[0]
    assert post_to_s3(upload, b"\xff\xd8" + b"x" * 5000).status_code == 204  # moto does not enforce the range
    drain(pump)
    body = photo(api, user, upload["photo_id"])
    assert body["status"] == "failed" and "more than the 10 declared" in body["error"]


def test_an_abandoned_slot_is_not_kept_alive_by_a_foreign_object(api, make_user, settings, monkeypatch, aws_stack):
    limited = with_settings(monkeypatch, settings, upload_url_ttl=60, pending_grace=0)
    user = make_user()
    upload = request_uploads(api, user, [JPEG])[0]
    forged = dict(upload["fields"], **{"x-amz-meta-upload-token": "guessed"})
    requests.post(upload["url"], data=forged, files={"file": ("p.jpg", b"\xff\xd8")}, timeout=30)
    old = limited.photo_store.get_photo(user.sub, upload["photo_id"])["uploaded_at"]
    limited.photo_store.update_photo(user.sub, upload["photo_id"], {"uploaded_at": old - timedelta(seconds=61)})
    assert limited.album.expire_abandoned_uploads(user.sub) == 1


def test_originals_are_served_with_a_pinned_type_and_disposition(api, make_user):
    user = make_user()
    upload = request_uploads(api, user, [dict(JPEG, filename="가족 사진.jpg")])[0]
    body = photo(api, user, upload["photo_id"])
    view, download = parse_qs(urlsplit(body["url"]).query), parse_qs(urlsplit(body["download_url"]).query)
    assert view["response-content-type"] == ["image/jpeg"] == download["response-content-type"]
    assert view["response-content-disposition"][0].startswith("inline;")
    assert download["response-content-disposition"][0].startswith("attachment;")
    assert "%EA%B0%80%EC%A1%B1" in download["response-content-disposition"][0]  # the name as given, UTF-8


def test_the_upload_form_pins_the_owner_and_the_records_token(api, make_user, services):
    user = make_user()
    upload = request_uploads(api, user, [JPEG])[0]
    token = services.photo_store.get_photo(user.sub, upload["photo_id"])["upload_token"]
    assert upload["fields"]["x-amz-meta-owner"] == user.sub
    assert upload["fields"]["x-amz-meta-photo-id"] == upload["photo_id"]
    assert upload["fields"]["x-amz-meta-upload-token"] == token
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert {"x-amz-meta-upload-token": token} in policy["conditions"]


def test_objects_s3_would_not_delete_are_tried_again_then_reported():
    """S3's DeleteObjects answers 200 with an error per key it could not delete; those are tried
    again, and if they stay, the deletion (account, trash) fails visibly and can be run again.
    moto never fails a key, so S3's answers are stubbed on a real client."""
    import boto3
    from botocore.stub import Stubber

    from chalicelib.errors import Unavailable
    from chalicelib.stores.object_storage import ObjectStorage

    s3 = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    storage = ObjectStorage(s3, "bucket")
    slow = {"Deleted": [{"Key": "a"}], "Errors": [{"Key": "b", "Code": "SlowDown", "Message": "slow down"}]}
    with Stubber(s3) as stub:
        stub.add_response("delete_objects", slow)
        stub.add_response("delete_objects", {"Deleted": [{"Key": "b"}]})  # the second try deletes it
        storage.delete_keys(["a", "b"])
        for _ in range(3):
            stub.add_response("delete_objects", {"Errors": [{"Key": "b", "Code": "AccessDenied", "Message": "no"}]})
        with pytest.raises(Unavailable, match=r"1 stored objects could not be deleted: b \(AccessDenied\)"):
            storage.delete_keys(["b"])
        stub.assert_no_pending_responses()
