"""Indexing end to end: presigned upload → moto S3 → SQS → the handler → the real face
endpoint (the built bundle, served over HTTP) → the store."""

import hashlib
import io
import json
import struct
import threading
import time
import uuid
import zlib
from dataclasses import replace
from urllib.parse import unquote_plus

import numpy as np
import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

import app as app_module
from chalicelib.ops.layout_migration import LEGACY_PREFIX, NotificationStillLegacy, migrate
from chalicelib.services import Services
from chalicelib.stores.object_storage import (
    ObjectEvent,
    ObjectStorage,
    object_events,
    parse_photo_key,
    photo_key,
    thumbnail_key,
)
from chalicelib.stores.photo_store import binary_to_vector, vector_to_binary
from local_stack.aws import client
from local_stack.pump import EventPump
from tests.conftest import free_port, object_keys, post_to_s3, request_uploads
from tests.face_fixtures import FACEDATA, needs_facedata

pytestmark = needs_facedata


def serve(wsgi_app):
    port = free_port()
    server = make_server("127.0.0.1", port, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def face_endpoint(engine, aws_stack):
    from gpu_endpoint.server import create_app

    server, url = serve(
        create_app(engine, allowed_buckets=[aws_stack.bucket], s3_client=client("s3", aws_stack.aws_endpoint_url))
    )
    yield url
    server.shutdown()


@pytest.fixture
def indexing(settings, face_endpoint, monkeypatch, aws_stack):
    """Services wired to the real endpoint, an emptied event queue and a pump."""
    svc = Services(replace(settings, face_endpoint_url=face_endpoint, face_timeout=60))
    svc.face_client.sleep = lambda seconds: None  # retries without waiting
    monkeypatch.setattr(app_module, "services", svc)
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    for url in (aws_stack.queue_url, aws_stack.dlq_url):
        empty(sqs, url)
    return svc, EventPump(sqs, aws_stack.queue_url, app_module.index_photos, wait_seconds=0)


def empty(sqs, url: str) -> None:
    """Drop what earlier tests left (PurgeQueue is allowed once a minute)."""
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def drain(pump, rounds: int = 40):
    """Pump until the queue stays empty (notifications arrive asynchronously)."""
    idle = 0
    for _ in range(rounds):
        if pump.pump_once():
            idle = 0
        else:
            idle += 1
            if idle >= 3:
                return
            time.sleep(0.2)


def upload(api, user, data: bytes, content_type: str, filename: str = "photo"):
    item = request_uploads(
        api, user, [{"filename": filename, "content_type": content_type, "size": max(1, len(data))}]
    )[0]
    assert post_to_s3(item, data, filename).status_code == 204
    return item["photo_id"]


def photo(api, user, photo_id):
    response = api.http.get(f"/photos/{photo_id}", headers=user.headers)
    assert response.status_code == 200
    return response.json_body


def encode(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


SINGLE = FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg" if FACEDATA else None
OTHER_SINGLE = FACEDATA / "people/deepface/Angelina_Jolie/img10.jpg" if FACEDATA else None


def test_real_photos_are_indexed(api, make_user, indexing, aws_stack):
    services, pump = indexing
    user = make_user()
    group = FACEDATA / "groups/dlib/2008_002470.jpg"
    ids = {
        "single": upload(api, user, SINGLE.read_bytes(), "image/jpeg"),
        "group": upload(api, user, group.read_bytes(), "image/jpeg"),
        "none": upload(
            api, user, encode(Image.linear_gradient("L").resize((640, 480)).convert("RGB"), "JPEG"), "image/jpeg"
        ),
        "small": upload(api, user, (FACEDATA / "groups/face_recognition/obama_small.jpg").read_bytes(), "image/jpeg"),
    }
    drain(pump)
    single = photo(api, user, ids["single"])
    assert single["status"] == "indexed" and single["face_count"] == 1
    x, y, w, h = single["faces"][0]["box"]
    assert x >= 0 and x + w <= single["width"] and y >= 0 and y + h <= single["height"]
    thumb = Image.open(
        io.BytesIO(
            client("s3", aws_stack.aws_endpoint_url)
            .get_object(Bucket=aws_stack.bucket, Key=f"thumbs/{user.sub}/{ids['single']}.jpg")["Body"]
            .read()
        )
    )
    assert max(thumb.size) == 512
    assert photo(api, user, ids["group"])["face_count"] == 6  # dlib's ground truth: 6 faces
    assert photo(api, user, ids["none"])["status"] == "indexed"
    assert photo(api, user, ids["none"])["face_count"] == 0
    assert photo(api, user, ids["small"])["face_count"] == 1
    stored = services.photo_store.faces.find_one({"owner": user.sub, "photo_id": ids["single"]})
    assert (
        stored["model_version"]
        == services.face_client.analyze_s3(aws_stack.bucket, f"photos/{user.sub}/{ids['single']}.jpg")["model_version"]
    )


def test_exif_rotated_photo(api, make_user, indexing):
    _, pump = indexing
    user = make_user()
    upright = Image.open(SINGLE)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo_id = upload(
        api, user, encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=95), "image/jpeg"
    )
    drain(pump)
    body = photo(api, user, photo_id)
    assert (body["width"], body["height"]) == upright.size
    assert body["face_count"] == 1


class RecordingTransport:
    """The endpoint's transport, keeping how each photo was sent (inline bytes or an S3 address)."""

    def __init__(self, transport):
        self.transport, self.sent = transport, []

    def invoke(self, body: bytes, timeout: float) -> bytes:
        self.sent += [sorted(set(image) - {"id", "boxes"}) for image in json.loads(body).get("images", [])]
        return self.transport.invoke(body, timeout)


def test_the_photo_is_downloaded_and_fully_decoded_once(api, make_user, indexing, monkeypatch):
    """The indexer sends the bytes it read to the endpoint (no second download) and decodes a JPEG
    at reduced scale for its renditions; sizes and boxes are the photo's own. A photo over the
    inline limit is sent by its S3 address and gives the same faces."""
    import chalicelib.face_client as face_client_module
    from chalicelib.shared.images import decode_image

    services, pump = indexing
    recording = RecordingTransport(services.face_client.transport)
    monkeypatch.setattr(services.face_client, "transport", recording)
    user = make_user()
    large = Image.open(SINGLE).convert("RGB")
    large = large.resize((large.width * 5000 // large.height, 5000), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: the upright photo is wider than the stored one
    data = encode(large.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=80)
    reduced = decode_image(data, max_side=2048)
    assert (reduced.width, reduced.height) == large.size and 2048 <= max(reduced.image.size) <= 2500
    photo_id = upload(api, user, data, "image/jpeg")
    drain(pump)
    inline = photo(api, user, photo_id)
    assert recording.sent == [["b64"]]
    assert (inline["width"], inline["height"]) == large.size and inline["face_count"] == 1
    x, y, w, h = inline["faces"][0]["box"]
    assert x >= 0 and x + w <= large.width and y >= 0 and y + h <= large.height and w > 500

    monkeypatch.setattr(face_client_module, "MAX_INLINE_BYTES", len(data) - 1)
    by_address = upload(api, user, data + b"\0", "image/jpeg")  # other bytes, so not a duplicate
    drain(pump)
    assert recording.sent[1:] == [["s3_uri"]]
    assert photo(api, user, by_address)["faces"][0]["box"] == pytest.approx([x, y, w, h], abs=1)


def png_bomb(side=30000) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * (side * 3 + 1)))
        + chunk(b"IEND", b"")
    )


def bad_inputs():
    face = Image.open(SINGLE).convert("RGB")
    animated = [face.resize((200, 260)), face.resize((200, 260)).rotate(10)]
    sixteen = Image.fromarray((np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    heic = io.BytesIO()
    face.save(heic, "HEIF")
    jpeg = SINGLE.read_bytes()
    return [
        ("text renamed .jpg", b"just some text, not a photo at all", "image/jpeg", "failed", "not a readable image"),
        ("truncated JPEG", jpeg[: len(jpeg) // 3], "image/jpeg", "failed", "not a readable image"),
        ("empty file", b"", "image/jpeg", "failed", "empty"),
        ("1x1 PNG", encode(Image.new("RGB", (1, 1)), "PNG"), "image/png", "failed", "at least 16 px"),
        ("PNG bomb", png_bomb(), "image/png", "failed", "pixels"),
        ("CMYK JPEG", encode(face.convert("CMYK"), "JPEG"), "image/jpeg", "indexed", 1),
        ("PNG with alpha", encode(rgba, "PNG"), "image/png", "indexed", 1),
        ("16-bit PNG", encode(sixteen, "PNG"), "image/png", "indexed", 1),
        # The declared type decides nothing: a GIF (its first frame) named .png is indexed as a GIF.
        (
            "animated GIF declared as PNG",
            encode(animated[0], "GIF", save_all=True, append_images=animated[1:]),
            "image/png",
            "indexed",
            1,
        ),
        (
            "animated WebP",
            encode(animated[0], "WEBP", save_all=True, append_images=animated[1:]),
            "image/webp",
            "indexed",
            1,
        ),
        ("HEIC", heic.getvalue(), "image/heic", "indexed", 1),
        ("JPEG declared as PNG", jpeg, "image/png", "indexed", 1),
        ("PNG saved as .jpg", encode(face, "PNG"), "image/jpeg", "indexed", 1),
    ]


# The type recorded for a photo is what its bytes are.
REAL_TYPES = {
    "animated GIF declared as PNG": "image/gif",
    "JPEG declared as PNG": "image/jpeg",
    "PNG saved as .jpg": "image/png",
}


def test_bad_inputs_each_have_a_defined_outcome(api, make_user, indexing):
    _, pump = indexing
    user = make_user()
    cases = bad_inputs()
    ids = [upload(api, user, data, content_type) for _, data, content_type, _, _ in cases]
    drain(pump)
    for (name, _, _, status, detail), photo_id in zip(cases, ids):
        body = photo(api, user, photo_id)
        assert body["status"] == status, (name, body)
        if status == "failed":
            assert detail in body["error"], (name, body["error"])
            assert body["faces"] == []
        else:
            assert body["face_count"] == detail, name
            assert body["content_type"] == REAL_TYPES.get(name, body["content_type"]), name
    assert pump.failed == 0  # bad photos are outcomes, not crashes


class FaultyEndpoint:
    """A real HTTP server that misbehaves as told, then (optionally) forwards to the real endpoint."""

    def __init__(self, real_url: str):
        import requests
        from werkzeug.wrappers import Request, Response

        self.mode, self.calls = "500", 0

        @Request.application
        def application(request):
            self.calls += 1
            if self.mode == "ok":
                real = requests.post(
                    f"{real_url}/invocations",
                    data=request.get_data(),
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
                return Response(real.content, real.status_code, content_type="application/json")
            if self.mode == "slow":
                time.sleep(1.5)
                return Response("{}", 200, content_type="application/json")
            if self.mode == "malformed":
                return Response("{not json", 200, content_type="application/json")
            return Response('{"error": "x", "message": "busy"}', int(self.mode), content_type="application/json")

        self.server, self.url = serve(application)


@pytest.mark.parametrize("mode", ["down", "slow", "500", "429", "malformed"])
def test_endpoint_faults_are_retried_then_visible_then_recovered(
    api, make_user, indexing, face_endpoint, settings, monkeypatch, mode
):
    services, pump = indexing
    faulty = FaultyEndpoint(face_endpoint)
    url = f"http://127.0.0.1:{free_port()}" if mode == "down" else faulty.url
    faulty.mode = mode
    broken = Services(replace(settings, face_endpoint_url=url, face_timeout=1, face_attempts=3))
    broken.face_client.sleep = lambda seconds: None
    monkeypatch.setattr(app_module, "services", broken)
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    time.sleep(0.3)
    pump.pump_once()
    body = photo(api, user, photo_id)
    assert body["status"] == "failed" and "retried" in body["error"]
    assert pump.failed == 1
    if mode != "down":
        assert faulty.calls == 3  # bounded retries
    # The endpoint recovers: the redelivered event indexes the photo.
    faulty.mode = "ok"
    monkeypatch.setattr(app_module, "services", Services(replace(settings, face_endpoint_url=faulty.url)))
    time.sleep(1.2)  # the queue's visibility timeout
    drain(pump)
    assert photo(api, user, photo_id)["status"] == "indexed"
    faulty.server.shutdown()


def test_persistent_failure_reaches_the_dead_letter_queue(api, make_user, indexing, settings, monkeypatch, aws_stack):
    _, pump = indexing
    down = Services(replace(settings, face_endpoint_url=f"http://127.0.0.1:{free_port()}", face_attempts=1))
    monkeypatch.setattr(app_module, "services", down)
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    deadline = time.time() + 30
    dead = []
    while time.time() < deadline and not dead:
        pump.pump_once()
        time.sleep(0.5)
        dead = sqs.receive_message(QueueUrl=aws_stack.dlq_url, WaitTimeSeconds=0).get("Messages", [])
    assert dead, "the event never reached the dead-letter queue"
    record = json.loads(dead[0]["Body"])["Records"][0]
    assert record["s3"]["object"]["key"].endswith(f"{photo_id}.jpg")
    body = photo(api, user, photo_id)
    assert body["status"] == "failed" and "retried" in body["error"]


def test_duplicate_and_out_of_order_events(api, make_user, indexing, aws_stack):
    services, pump = indexing
    user = make_user()
    photo_id = upload(api, user, (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes(), "image/jpeg")
    drain(pump)
    key = f"photos/{user.sub}/{photo_id}.jpg"
    created = {
        "Records": [
            {"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": aws_stack.bucket}, "object": {"key": key}}}
        ]
    }
    faces_before = sorted(f["face_id"] for f in services.photo_store.list_faces(user.sub, photo_id))
    assert services.indexer.handle_notification(created) == ["already_indexed"]
    # Forced re-index (e.g. the ETag check bypassed): upserts, still one set of faces.
    services.photo_store.update_photo(user.sub, photo_id, {"source_etag": "something-else"})
    threads = [threading.Thread(target=services.indexer.handle_notification, args=(created,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(f["face_id"] for f in services.photo_store.list_faces(user.sub, photo_id)) == faces_before
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 6
    # A removal that overtakes its creation: the record goes, the late creation changes nothing.
    removed = {"Records": [dict(created["Records"][0], eventName="ObjectRemoved:Delete")]}
    client("s3", aws_stack.aws_endpoint_url).delete_object(Bucket=aws_stack.bucket, Key=key)
    assert services.indexer.handle_notification(removed) == ["forgotten"]
    assert services.indexer.handle_notification(created) == ["orphan_removed"]
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 0


def test_objects_deleted_outside_the_api_are_cleaned_up(api, make_user, indexing, aws_stack):
    services, pump = indexing
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    assert photo(api, user, photo_id)["status"] == "indexed"
    s3 = client("s3", aws_stack.aws_endpoint_url)
    s3.delete_object(Bucket=aws_stack.bucket, Key=f"photos/{user.sub}/{photo_id}.jpg")
    drain(pump)
    assert api.http.get(f"/photos/{photo_id}", headers=user.headers).status_code == 404
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 0
    assert object_keys(aws_stack, user.sub) == []


def event_keys(sqs, queue_url: str) -> list[str]:
    """The object keys of the notifications waiting in the queue (consumed)."""
    keys = []
    for _ in range(3):  # notifications may trail the upload's answer a little
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages")
        for m in messages or []:
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in json.loads(m["Body"]).get("Records", [])]
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        time.sleep(0.3)
    return keys


def test_only_album_photos_notify_the_indexer(api, make_user, indexing, aws_stack):
    """One photo is one indexer run: the thumbnail the indexer writes and a search key photo are
    laid out where the bucket's notification (a key prefix) does not reach."""
    services, _ = indexing
    user = make_user()
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    (photo_key,) = event_keys(sqs, aws_stack.queue_url)
    assert parse_photo_key(photo_key) == (user.sub, photo_id)
    assert services.indexer.handle_notification(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": aws_stack.bucket}, "object": {"key": photo_key}},
                }
            ]
        }
    ) == ["indexed"]
    key = api.http.post(
        "/search/uploads",
        headers={**user.headers, "Content-Type": "application/json"},
        body=json.dumps({"filename": "key.jpg", "content_type": "image/jpeg", "size": 1000}),
    ).json_body
    assert post_to_s3(key, SINGLE.read_bytes()[:1000], "key.jpg").status_code == 204
    assert sorted(object_keys(aws_stack, user.sub)) == sorted(
        [photo_key, thumbnail_key(user.sub, photo_id), key["fields"]["key"]]
    )
    assert event_keys(sqs, aws_stack.queue_url) == []  # neither the thumbnail nor the key photo


def test_s3_test_event_and_foreign_keys_are_ignored(indexing, aws_stack):
    services, _ = indexing
    assert services.indexer.handle_notification({"Event": "s3:TestEvent"}) == ["test_event"]
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": aws_stack.bucket}, "object": {"key": "thumbs/x/abc.jpg"}},
    }
    assert services.indexer.handle_notification({"Records": [record]}) == ["ignored"]
    # What S3 never sends (a hand-made message, a queue shared by mistake) indexes nothing and
    # raises nothing, so the message is not delivered again for ever.
    assert services.indexer.handle_notification({"Records": [None, {"eventName": "ObjectCreated:Put"}]}) == [
        "malformed",
        "malformed",
    ]


@pytest.mark.parametrize(
    "message, outcomes",
    [
        ({}, []),
        (
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Post",
                        "s3": {"bucket": {"name": "b"}, "object": {"key": "a+b%2B.jpg"}},
                    }
                ]
            },
            [ObjectEvent("ObjectCreated:Post", "b", "a b+.jpg")],
        ),
        ({"Records": "not a list"}, []),
        ({"Records": [None, "x", 3]}, [None] * 3),
        ({"Records": [{"eventName": "ObjectCreated:Put"}]}, [None]),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {"key": "k"}}}]},
            [None],
        ),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": None}}]},
            [None],
        ),
    ],
)
def test_an_s3_notification_names_its_objects_or_says_a_record_is_malformed(message, outcomes):
    assert object_events(message) == outcomes


def test_reindex_moves_stale_photos_to_the_served_bundle_and_resumes(api, make_user, indexing):
    services, pump = indexing
    alice, bob = make_user("alice"), make_user("bob")
    alice_photo = upload(api, alice, SINGLE.read_bytes(), "image/jpeg")
    bob_photo = upload(api, bob, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    served = services.face_client.model_version()
    for user, photo_id in ((alice, alice_photo), (bob, bob_photo)):
        # As if indexed by an older bundle.
        services.photo_store.update_photo(user.sub, photo_id, {"model_version": "old-bundle"})
        services.photo_store.faces.update_many({"owner": user.sub}, {"$set": {"model_version": "old-bundle"}})

    result = app_module.reindex({"owner": alice.sub}, None)
    assert result == {"total": 1, "done": 0, "enqueued": 1, "model_version": served}
    drain(pump)
    assert services.photo_store.get_photo(alice.sub, alice_photo)["model_version"] == served
    assert {f["model_version"] for f in services.photo_store.faces.find({"owner": alice.sub})} == {served}
    # Re-embedded faces carry the new bundle's cohort statistics, which normalised search needs.
    assert all(f.get("cohort_std", 0) > 0 for f in services.photo_store.faces.find({"owner": alice.sub}))
    assert services.photo_store.get_photo(bob.sub, bob_photo)["model_version"] == "old-bundle"  # not in scope
    again = app_module.reindex({"owner": alice.sub}, None)
    assert again["enqueued"] == 0 and again["done"] == 1  # resumable: nothing left to send
    everyone = app_module.reindex({}, None)
    assert everyone["enqueued"] == 1  # bob's
    drain(pump)
    assert services.photo_store.get_photo(bob.sub, bob_photo)["model_version"] == served


class AsyncEndpoint:
    """SageMaker asynchronous inference, played as it behaves (moto cannot run an endpoint): it
    reads the request from S3, runs it on the real face endpoint, writes the answer to S3 and
    publishes the outcome, delivered raw to the photo-events queue (the stack's subscription)."""

    def __init__(self, endpoint_url: str, aws_stack, fail: bool = False):
        self.url, self.fail = endpoint_url, fail
        self.s3, self.sqs = client("s3", aws_stack.aws_endpoint_url), client("sqs", aws_stack.aws_endpoint_url)
        self.queue_url, self.calls = aws_stack.queue_url, []

    def invoke_endpoint_async(self, EndpointName, InputLocation, ContentType, InferenceId):  # noqa: N803 (boto3's names)
        self.calls.append(InferenceId)
        bucket, request_key = InputLocation.removeprefix("s3://").split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=request_key)["Body"].read()
        answer_key = f"inference/answers/{InferenceId}.out"
        notification = {
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
            "inferenceId": InferenceId,
            "requestParameters": {
                "endpointName": EndpointName,
                "inputLocation": InputLocation,
                "contentType": ContentType,
            },
        }
        if self.fail:
            notification.update(invocationStatus="Failed", failureReason="ClientError: the model container crashed")
        else:
            answer = requests.post(
                f"{self.url}/invocations", data=body, headers={"Content-Type": ContentType}, timeout=60
            )
            self.s3.put_object(Bucket=bucket, Key=answer_key, Body=answer.content)
            notification.update(
                invocationStatus="Completed",
                responseParameters={"contentType": "application/json", "outputLocation": f"s3://{bucket}/{answer_key}"},
            )
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(notification))
        return {"InferenceId": InferenceId, "OutputLocation": f"s3://{bucket}/{answer_key}"}


@needs_facedata
def test_a_reindex_through_the_backfill_endpoint_lands_like_a_real_time_one(
    api, make_user, indexing, face_endpoint, aws_stack
):
    from chalicelib.backfill import Backfill

    services, pump = indexing
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    served = services.face_client.model_version()
    before = services.photo_store.faces.find_one({"owner": user.sub})["embedding"]
    for failing in (True, False):
        services.photo_store.update_photo(user.sub, photo_id, {"model_version": "old-bundle"})
        endpoint = AsyncEndpoint(face_endpoint, aws_stack, fail=failing)
        services.indexer.backfill = Backfill(endpoint, "memory-studio-test-faces-backfill", services.object_storage)
        assert app_module.reindex({"owner": user.sub}, None)["enqueued"] == 1
        drain(pump)  # the reindex message goes to the backfill; its outcome comes back on the same queue
        assert len(endpoint.calls) == 1
        record = services.photo_store.get_photo(user.sub, photo_id)
        if failing:  # the photo stays as it was, for the next run
            assert record["status"] == "indexed" and record["model_version"] == "old-bundle"
    assert record["model_version"] == served and record["face_count"] == 1
    after = services.photo_store.faces.find_one({"owner": user.sub})
    assert after["model_version"] == served
    assert np.allclose(binary_to_vector(after["embedding"]), binary_to_vector(before), atol=1e-4)  # the same model
    assert services.object_storage.list_keys("inference/") == []  # requests and answers removed once read


def test_rollout_of_the_default_bundle_publish_deploy_reindex(
    api, make_user, indexing, aws_stack, bundle_dir, stock_bundle_dir, tmp_path
):
    """The default bundle (fine-tuned dlib fused with faceres) reaches an album indexed by the
    previous default (the stock fusion): publish → deploy → search refuses the old vectors →
    reindex → search."""
    import tarfile

    from chalicelib.shared.boxes import box_iou
    from chalicelib.shared.images import decode_image
    from gpu_endpoint.engine import FaceEngine
    from model_factory import deploy

    services, pump = indexing
    served = services.face_client.model_version()
    # Publish: the tarball SageMaker unpacks holds everything the manifest names, and it serves.
    s3 = client("s3", aws_stack.aws_endpoint_url)
    s3.create_bucket(Bucket="memory-studio-models-rollout")
    url = deploy.publish(s3, "memory-studio-models-rollout", bundle_dir)
    key = url.split("/", 3)[3]
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(s3.get_object(Bucket="memory-studio-models-rollout", Key=key)["Body"].read())
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "model", filter="data")
    unpacked = FaceEngine(tmp_path / "model", providers=["CPUExecutionProvider"])
    assert unpacked.version == served and len(unpacked.parts) == 2 and "training" in unpacked.manifest.parts[0]
    result = deploy.deploy(
        client("sagemaker", aws_stack.aws_endpoint_url),
        client("application-autoscaling", aws_stack.aws_endpoint_url),
        model_url=url,
        version=served,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/faces:1",
        role="arn:aws:iam::123456789012:role/sm",
        endpoint="ms-rollout-faces",
    )
    assert result["action"] == "created"

    # An album indexed by the previous default: each face's vector is the stock fusion's, of the same box.
    alice = make_user("alice")
    jolie = sorted((FACEDATA / "people/deepface/Angelina_Jolie").glob("*.jpg"))[:2]
    photo_ids = [upload(api, alice, p.read_bytes(), "image/jpeg") for p in jolie]
    drain(pump)
    stock = FaceEngine(stock_bundle_dir, providers=["CPUExecutionProvider"])
    previous = stock.version
    assert previous != served
    for photo_id, path in zip(photo_ids, jolie, strict=True):
        stock_faces = stock.analyze([decode_image(path.read_bytes()).image])[0]
        for face in services.photo_store.faces.find({"owner": alice.sub, "photo_id": photo_id}):
            same = max(stock_faces, key=lambda f: box_iou(f.box, face["box"]))
            assert box_iou(same.box, face["box"]) > 0.5
            services.photo_store.faces.update_one(
                {"_id": face["_id"]},
                {"$set": {"model_version": previous, "embedding": vector_to_binary(same.embedding)}},
            )
        services.photo_store.update_photo(alice.sub, photo_id, {"model_version": previous})
    first = services.photo_store.faces.find_one({"owner": alice.sub, "photo_id": photo_ids[0]})

    body = json.dumps({"photo_id": photo_ids[0], "face_id": first["face_id"]})
    refused = api.http.post("/search", headers=alice.headers, body=body)
    assert refused.status_code == 409 and refused.json_body["error"] == "stale_model_version"

    assert app_module.reindex({"owner": alice.sub}, None)["enqueued"] == 2
    drain(pump)
    faces = list(services.photo_store.faces.find({"owner": alice.sub}))
    assert {f["model_version"] for f in faces} == {served}
    assert {binary_to_vector(f["embedding"]).shape for f in faces} == {(unpacked.manifest.embedding_dim,)}
    first = next(f for f in faces if f["photo_id"] == photo_ids[0])
    found = api.http.post(
        "/search", headers=alice.headers, body=json.dumps({"photo_id": photo_ids[0], "face_id": first["face_id"]})
    )
    assert found.status_code == 200, found.json_body
    assert found.json_body["key_photo_id"] == photo_ids[0]  # the key's own photo is not a result
    assert {r["photo_id"] for r in found.json_body["results"]} == set(photo_ids[1:])


def exif_taken(local: str, offset: str | None) -> Image.Exif:
    exif = Image.Exif()
    details = exif.get_ifd(0x8769)
    details[0x9003] = local  # DateTimeOriginal: the camera's local time
    if offset:
        details[0x9011] = offset  # OffsetTimeOriginal
    return exif


def test_the_time_a_photo_was_taken_keeps_its_zone_or_says_it_has_none(api, make_user, indexing):
    """EXIF keeps local time: with OffsetTimeOriginal it is answered with that offset, without it as
    local time with no zone — never as UTC (the first version answered 14:03 Seoul time as 14:03Z)."""
    _, pump = indexing
    user = make_user()
    face = Image.open(SINGLE).convert("RGB")
    with_zone = upload(api, user, encode(face, "JPEG", exif=exif_taken("2021:05:01 14:03:00", "+09:00")), "image/jpeg")
    no_zone = upload(api, user, encode(face, "JPEG", exif=exif_taken("2021:05:01 14:03:00", None)), "image/jpeg")
    drain(pump)
    assert photo(api, user, with_zone)["taken_at"] == "2021-05-01T14:03:00+09:00"
    assert photo(api, user, no_zone)["taken_at"] == "2021-05-01T14:03:00"


def test_the_album_is_a_timeline_by_date_taken_and_paging_it_misses_no_photo_being_indexed(api, make_user, indexing):
    """Ordered by the camera's clock (upload time without EXIF), grouped by month with counts; a
    photo only moves back in time when indexed, so a client paging meanwhile may meet it twice but
    never misses it."""
    _, pump = indexing
    user = make_user()
    face = Image.open(SINGLE).convert("RGB")
    old = upload(api, user, encode(face, "JPEG", exif=exif_taken("2019:03:02 09:00:00", None)), "image/jpeg")
    seoul = upload(
        api, user, encode(face, "JPEG", quality=80, exif=exif_taken("2021:05:01 14:03:00", "+09:00")), "image/jpeg"
    )
    plain = upload(api, user, encode(face, "JPEG", quality=70), "image/jpeg")
    first = api.http.get("/photos?limit=1", headers=user.headers).json_body  # all three pending: upload time
    drain(pump)
    seen = [p["photo_id"] for p in first["photos"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.http.get(f"/photos?limit=1&cursor={cursor}", headers=user.headers).json_body
        seen += [p["photo_id"] for p in page["photos"]]
        cursor = page["next_cursor"]
    assert set(seen) == {old, seoul, plain}

    listed = api.http.get("/photos", headers=user.headers).json_body["photos"]
    assert [p["photo_id"] for p in listed] == [plain, seoul, old]
    assert listed[1]["timeline_at"] == "2021-05-01T14:03:00" and listed[2]["timeline_at"] == "2019-03-02T09:00:00"
    months = api.http.get("/photos/months", headers=user.headers).json_body["months"]
    assert months == [
        {"month": listed[0]["timeline_at"][:7], "count": 1},
        {"month": "2021-05", "count": 1},
        {"month": "2019-03", "count": 1},
    ]


def test_the_timeline_place_of_a_photo():
    from datetime import datetime

    from chalicelib.records import timeline_at

    uploaded = datetime(2024, 6, 1, 12, 0)
    assert timeline_at(uploaded) == uploaded
    assert timeline_at(uploaded, "2021-05-01T14:03:00+09:00") == datetime(2021, 5, 1, 14, 3)  # the local clock
    assert timeline_at(uploaded, datetime(2021, 5, 1, 14, 3)) == datetime(2021, 5, 1, 14, 3)  # first-version record
    assert timeline_at(uploaded, "2030-01-01T00:00:00") == uploaded  # a camera clock ahead: never after the upload
    assert timeline_at(uploaded, "garbage") == uploaded


def test_a_photo_trashed_while_it_is_indexed_keeps_its_faces_in_the_trash(api, make_user, indexing):
    services, pump = indexing
    user = make_user()
    photo_id = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    assert api.http.delete(f"/photos/{photo_id}", headers=user.headers).status_code == 204  # still pending
    drain(pump)
    shown = photo(api, user, photo_id)
    assert shown["status"] == "indexed" and shown["trashed_at"] is not None
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 0
    assert services.photo_store.trashed_faces.count_documents({"owner": user.sub}) == 1
    body = json.dumps({"photo_ids": [photo_id]})
    assert api.http.post("/trash/restore", headers=user.headers, body=body).json_body["restored"] == [photo_id]
    key = json.dumps({"photo_id": photo_id, "face_id": f"{photo_id}-000"})
    found = api.http.post("/search", headers=user.headers, body=key)  # its face searchable again
    assert found.status_code == 200 and found.json_body["key_photo_id"] == photo_id
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 1


def test_a_heic_photo_is_viewed_through_a_jpeg_preview_that_goes_with_it(api, make_user, indexing, aws_stack):
    """No browser shows HEIC: the indexer keeps a JPEG preview (upright, the photo's size up to 2048 px)
    and the photo view uses ``preview_url``; a JPEG is shown as it is. Deleting for good removes it."""
    _, pump = indexing
    user = make_user()
    face = Image.open(SINGLE).convert("RGB")
    heic = upload(api, user, encode(face, "HEIF"), "image/heic", "IMG_1.HEIC")
    jpeg = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    shown = photo(api, user, heic)
    assert shown["status"] == "indexed" and shown["preview_url"] != shown["url"]
    preview = Image.open(io.BytesIO(requests.get(shown["preview_url"], timeout=10).content))
    assert preview.format == "JPEG" and preview.size == (shown["width"], shown["height"])
    plain = photo(api, user, jpeg)
    assert plain["preview_url"].split("?")[0] == plain["url"].split("?")[0]  # the original itself
    assert f"previews/{user.sub}/{heic}.jpg" in object_keys(aws_stack, user.sub)
    api.http.delete(f"/photos/{heic}", headers=user.headers)
    assert api.http.delete(f"/trash/{heic}", headers=user.headers).status_code == 204
    assert not [k for k in object_keys(aws_stack, user.sub) if heic in k]


def test_taken_times_stored_by_the_first_version_are_shown_as_local_time():
    from datetime import datetime

    from chalicelib.photo_views import taken_at

    assert taken_at(datetime(2021, 5, 1, 14, 3)) == "2021-05-01T14:03:00"
    assert taken_at("2021-05-01T14:03:00+09:00") == "2021-05-01T14:03:00+09:00" and taken_at(None) is None


def test_a_bucket_of_the_first_layout_is_migrated_without_losing_a_face(api, make_user, indexing, aws_stack):
    """Objects under ``users/{sub}/{kind}/`` (the first layout) move to ``{kind}/{sub}/``: records
    follow, faces stay, a photo uploaded to a legacy key while the stack was switched gets
    indexed, orphans and search keys go; a second run finds nothing to do."""
    services, pump = indexing
    user, other = make_user(), make_user()
    s3, sqs = client("s3", aws_stack.aws_endpoint_url), client("sqs", aws_stack.aws_endpoint_url)
    indexed = upload(api, user, SINGLE.read_bytes(), "image/jpeg")
    others = upload(api, other, SINGLE.read_bytes(), "image/jpeg")
    drain(pump)
    faces_before = services.photo_store.faces.count_documents({"owner": user.sub, "photo_id": indexed})
    assert faces_before == 1

    def legacy(key: str) -> str:
        kind, owner, name = key.split("/")
        return f"users/{owner}/{kind}/{name}"

    # The first layout, made by hand: the indexed photo's objects and record under users/ ...
    record = services.photo_store.get_photo(user.sub, indexed)
    for key in (record["key"], record["thumbnail_key"]):
        services.object_storage.copy(key, legacy(key))
        s3.delete_object(Bucket=aws_stack.bucket, Key=key)
    services.photo_store.update_photo(
        user.sub, indexed, {"key": legacy(record["key"]), "thumbnail_key": legacy(record["thumbnail_key"])}
    )
    # ... a photo uploaded to a legacy key (its record pending), an orphan and a search key.
    size = len(OTHER_SINGLE.read_bytes())
    (pending,) = request_uploads(api, user, [{"filename": "p.jpg", "content_type": "image/jpeg", "size": size}])
    pending_key = legacy(services.photo_store.get_photo(user.sub, pending["photo_id"])["key"])
    services.photo_store.update_photo(user.sub, pending["photo_id"], {"key": pending_key})
    # A record of that version has no upload token (its form pinned none): any object at its key is its own.
    services.photo_store.photos.update_one(
        {"photo_id": pending["photo_id"], "owner": user.sub}, {"$unset": {"upload_token": ""}}
    )
    s3.put_object(Bucket=aws_stack.bucket, Key=pending_key, Body=OTHER_SINGLE.read_bytes())
    orphan = f"users/{user.sub}/photos/{'a' * 32}.jpg"
    search_key = f"users/{user.sub}/keys/{'b' * 32}.jpg"
    for key in (orphan, search_key):
        s3.put_object(Bucket=aws_stack.bucket, Key=key, Body=b"x")
    empty(sqs, aws_stack.queue_url)  # the events of the hand-made layout are not the test's

    counts = migrate(services.object_storage, services.photo_store)
    assert counts == {"moved_photos": 2, "moved_thumbs": 1, "deleted_orphans": 1, "deleted_keys": 1}
    drain(pump)  # the copies' notifications
    assert services.object_storage.list_keys(LEGACY_PREFIX) == []
    moved = photo(api, user, indexed)
    assert moved["status"] == "indexed" and moved["face_count"] == 1
    assert services.photo_store.faces.count_documents({"owner": user.sub, "photo_id": indexed}) == faces_before
    assert requests.get(moved["url"], timeout=10).content == SINGLE.read_bytes()
    assert requests.get(moved["thumbnail_url"], timeout=10).status_code == 200
    late = photo(api, user, pending["photo_id"])
    assert late["status"] == "indexed" and late["face_count"] == 1
    assert sorted(object_keys(aws_stack, user.sub)) == sorted(
        [
            photo_key(user.sub, indexed, "image/jpeg"),
            thumbnail_key(user.sub, indexed),
            photo_key(user.sub, pending["photo_id"], "image/jpeg"),
            thumbnail_key(user.sub, pending["photo_id"]),
        ]
    )
    assert photo(api, other, others)["status"] == "indexed"  # another user's photos untouched
    assert migrate(services.object_storage, services.photo_store) == {}


def test_the_migration_refuses_a_bucket_that_still_notifies_the_first_layout(services, aws_stack):
    s3 = client("s3", aws_stack.aws_endpoint_url)
    bucket = f"legacy-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    queue_arn = client("sqs", aws_stack.aws_endpoint_url).get_queue_attributes(
        QueueUrl=aws_stack.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectRemoved:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "users/"}]}},
                }
            ]
        },
    )
    legacy = f"users/u/photos/{'c' * 32}.jpg"
    s3.put_object(Bucket=bucket, Key=legacy, Body=b"x")
    with pytest.raises(NotificationStillLegacy, match="users/"):
        migrate(ObjectStorage(s3, bucket), services.photo_store)
    assert s3.head_object(Bucket=bucket, Key=legacy)["ContentLength"] == 1  # nothing touched


def test_the_same_bytes_twice_make_one_photo(api, make_user, indexing, aws_stack):
    """By the bytes (the indexer, whatever the client says) and by the client's SHA-256 (the API,
    before anything is uploaded); per user: another user's identical photo is theirs."""
    services, pump = indexing
    user, other = make_user(), make_user()
    data = SINGLE.read_bytes()
    original = upload(api, user, data, "image/jpeg", "a.jpg")
    drain(pump)
    again = upload(api, user, data, "image/jpeg", "copy of a.jpg")  # a client that sends no hash
    theirs = upload(api, other, data, "image/jpeg")
    drain(pump)
    copy = photo(api, user, again)
    assert copy["status"] == "duplicate" and copy["duplicate_of"] == original and copy["url"] is None
    assert [p["photo_id"] for p in api.http.get("/photos", headers=user.headers).json_body["photos"]] == [original]
    assert object_keys(aws_stack, user.sub) == [
        photo_key(user.sub, original, "image/jpeg"),
        thumbnail_key(user.sub, original),
    ]
    assert services.photo_store.faces.count_documents({"owner": user.sub}) == 1
    assert services.photo_store.usage.of(user.sub)["photos"] == 1
    assert photo(api, other, theirs)["status"] == "indexed"

    sha = hashlib.sha256(data).hexdigest()
    fresh = hashlib.sha256(OTHER_SINGLE.read_bytes()).hexdigest()
    files = [
        {"filename": "b.jpg", "content_type": "image/jpeg", "size": len(data), "sha256": sha.upper()},
        {"filename": "c.jpg", "content_type": "image/jpeg", "size": 1000, "sha256": fresh},
        {"filename": "c copy.jpg", "content_type": "image/jpeg", "size": 1000, "sha256": fresh},
    ]
    answers = request_uploads(api, user, files)
    assert answers[0] == {"photo_id": original, "duplicate_of": original}
    assert "fields" in answers[1] and answers[2] == {
        "photo_id": answers[1]["photo_id"],
        "duplicate_of": answers[1]["photo_id"],
    }
    assert (
        services.photo_store.count_photos(user.sub, status="pending") == 1
        and services.photo_store.usage.of(user.sub)["photos"] == 2
    )
    bad = api.http.post(
        "/photos/uploads",
        headers={**user.headers, "Content-Type": "application/json"},
        body=json.dumps({"files": [dict(files[0], sha256="not-a-hash")]}),
    )
    assert bad.status_code == 400 and "sha256" in bad.json_body["message"]

    # Deleting the duplicate's record leaves the album and the quota as they are.
    assert api.http.delete(f"/photos/{again}", headers=user.headers).status_code == 204
    assert services.photo_store.usage.of(user.sub)["photos"] == 2
    assert photo(api, user, original)["status"] == "indexed"
    # A photo in the trash is not the original of a new upload of its bytes: that one stays.
    api.http.delete(f"/photos/{original}", headers=user.headers)
    assert request_uploads(api, user, files[:1])[0].get("duplicate_of") is None


def test_near_duplicates_are_flagged_in_the_photo_view(api, make_user, indexing):
    """The same picture re-encoded and resized is flagged; another photo of the same person is not."""
    _, pump = indexing
    user = make_user()
    photos = sorted((FACEDATA / "people/deepface/George_Clooney").glob("*.jpg"))
    original = photos[0].read_bytes()
    image = Image.open(io.BytesIO(original)).convert("RGB")
    smaller, recoded = io.BytesIO(), io.BytesIO()
    image.resize((image.width // 2, image.height // 2)).save(smaller, "JPEG", quality=70)
    image.save(recoded, "PNG")
    ids = {
        "original": upload(api, user, original, "image/jpeg"),
        "smaller": upload(api, user, smaller.getvalue(), "image/jpeg"),
        "recoded": upload(api, user, recoded.getvalue(), "image/png"),
        "other": upload(api, user, photos[1].read_bytes(), "image/jpeg"),
    }
    drain(pump)
    shown = api.http.get(f"/photos/{ids['original']}", headers=user.headers).json_body
    assert set(shown["near_duplicates"]) == {ids["smaller"], ids["recoded"]}
    other = api.http.get(f"/photos/{ids['other']}", headers=user.headers).json_body
    assert other["near_duplicates"] == []
    # A copy in the trash is out of the album: no longer flagged.
    assert api.http.delete(f"/photos/{ids['smaller']}", headers=user.headers).status_code == 204
    shown = api.http.get(f"/photos/{ids['original']}", headers=user.headers).json_body
    assert shown["near_duplicates"] == [ids["recoded"]]
