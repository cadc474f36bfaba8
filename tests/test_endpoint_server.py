"""The endpoint's SageMaker contract: every content type, every error case, S3 inputs."""

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.face_fixtures import FACEDATA, needs_facedata

pytestmark = needs_facedata


@pytest.fixture(scope="module")
def client(engine):
    from gpu_endpoint.server import create_app

    return create_app(engine).test_client()


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return (FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg").read_bytes()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def single_face(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    (result,) = body["results"]
    return body, result


def test_ping(client, engine):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == engine.version


def test_jpeg_body(client, face_jpeg, engine):
    body, result = single_face(client.post("/invocations", data=face_jpeg, content_type="image/jpeg"))
    assert body["model_version"] == engine.version
    assert (result["width"], result["height"]) == Image.open(io.BytesIO(face_jpeg)).size
    (face,) = result["faces"]
    x, y, w, h = face["box"]
    assert 0 <= x < x + w <= result["width"] and 0 <= y < y + h <= result["height"]
    assert len(face["landmarks"]) == 5 and face["score"] > 0.9
    assert len(face["embedding"]) == engine.manifest.embedding_dim
    assert np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_each_answer_says_where_its_time_went(client, face_jpeg):
    """``Server-Timing``: decode, analyze and encode, in that order, each a duration in ms."""
    response = client.post("/invocations", data=face_jpeg, content_type="image/jpeg")
    steps = [metric.strip().split(";dur=") for metric in response.headers["Server-Timing"].split(",")]
    assert [name for name, _ in steps] == ["decode", "analyze", "encode"]
    durations = [float(ms) for _, ms in steps]
    assert all(ms >= 0 for ms in durations) and durations[1] > 1  # the models ran


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("WEBP", "image/webp"), ("HEIF", "image/heic")])
def test_other_formats_give_the_same_face(client, face_jpeg, fmt, content_type):
    image = Image.open(io.BytesIO(face_jpeg))
    data = encode(image, fmt, quality=95) if fmt != "PNG" else encode(image, fmt)
    _, reference = single_face(client.post("/invocations", data=face_jpeg, content_type="image/jpeg"))
    _, result = single_face(client.post("/invocations", data=data, content_type=content_type))
    assert len(result["faces"]) == 1
    np.testing.assert_allclose(result["faces"][0]["box"], reference["faces"][0]["box"], atol=4)
    assert np.dot(result["faces"][0]["embedding"], reference["faces"][0]["embedding"]) > 0.95


def test_exif_orientation_is_applied(client, face_jpeg):
    upright = Image.open(io.BytesIO(face_jpeg))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned a quarter anticlockwise...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "turn 90 degrees clockwise to view"
    data = encode(rotated, "JPEG", exif=exif, quality=95)
    _, result = single_face(client.post("/invocations", data=data, content_type="image/jpeg"))
    assert (result["width"], result["height"]) == upright.size
    assert len(result["faces"]) == 1


def test_json_batch_with_b64_and_a_bad_entry(client, face_jpeg):
    group = (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes()
    body = {
        "images": [
            {"id": "one", "b64": base64.b64encode(face_jpeg).decode()},
            {"id": "group", "b64": base64.b64encode(group).decode()},
            {"id": "junk", "b64": base64.b64encode(b"not an image").decode()},
            {"id": "bad64", "b64": "%%%"},
        ],
        "max_faces": 3,
        "min_face_size": 20,
    }
    response = client.post("/invocations", json=body)
    assert response.status_code == 200
    results = {r["id"]: r for r in response.get_json()["results"]}
    assert len(results["one"]["faces"]) == 1
    assert len(results["group"]["faces"]) == 3  # capped by max_faces, largest first
    areas = [f["box"][2] * f["box"][3] for f in results["group"]["faces"]]
    assert areas == sorted(areas, reverse=True)
    assert results["junk"]["error"]["status"] == 400
    assert results["bad64"]["error"]["error"] == "bad_base64"


def test_s3_uri_input(engine, face_jpeg, aws_stack, monkeypatch):
    from gpu_endpoint.server import create_app
    from local_stack.aws import client as aws_client

    aws_client("s3", aws_stack.aws_endpoint_url).put_object(
        Bucket=aws_stack.bucket, Key="photos/u/x.jpg", Body=face_jpeg
    )
    for key, value in aws_stack.app_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ALLOWED_S3_BUCKETS", aws_stack.bucket)
    client = create_app(engine).test_client()
    body = {
        "images": [
            {"id": "s3", "s3_uri": f"s3://{aws_stack.bucket}/photos/u/x.jpg"},
            {"id": "missing", "s3_uri": f"s3://{aws_stack.bucket}/photos/u/none.jpg"},
            {"id": "elsewhere", "s3_uri": "s3://someone-elses-bucket/secret.jpg"},
        ]
    }
    results = {r["id"]: r for r in client.post("/invocations", json=body).get_json()["results"]}
    assert len(results["s3"]["faces"]) == 1
    assert results["missing"]["error"]["status"] == 404
    assert results["elsewhere"]["error"]["status"] == 403


def png_bomb(side: int = 20000) -> bytes:
    """A tiny file that claims a huge image: a valid PNG header and one compressed row."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * side * 3)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, content_type, status",
    [
        (b"this is text, not a photo", "image/jpeg", 400),
        (b"", "image/jpeg", 400),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 truncated", "image/jpeg", 400),
        (None, "image/jpeg", 413),  # the PNG bomb
        (b"GIF89a...", "image/gif", 400),  # a GIF is accepted, this one is unreadable
        (b"BM...", "image/bmp", 415),
        (b"hello", "text/plain", 415),
        (b"{not json", "application/json", 400),
        (b'{"images": [{"id": "a", "b64": "AA=="}], "max_faces": 0}', "application/json", 400),
    ],
)
def test_bad_requests_get_clear_errors(client, data, content_type, status):
    response = client.post("/invocations", data=png_bomb() if data is None else data, content_type=content_type)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["message"]
    assert client.get("/ping").status_code == 200  # the worker lives on


def test_a_gif_declared_as_jpeg_is_read_as_what_it_is(client):
    data = encode(Image.new("RGB", (64, 64), "white"), "GIF")
    response = client.post("/invocations", data=data, content_type="image/jpeg")
    assert response.status_code == 200 and response.get_json()["results"][0]["faces"] == []


def test_too_many_images(client):
    body = {"images": [{"id": str(i), "b64": "AA=="} for i in range(17)]}
    assert client.post("/invocations", json=body).status_code == 413


def test_photo_without_faces(client):
    data = encode(Image.new("RGB", (640, 480), (90, 140, 200)), "JPEG")
    _, result = single_face(client.post("/invocations", data=data, content_type="image/jpeg"))
    assert result["faces"] == []


CRASHER = Path(__file__).resolve().parent / "fuzz_cases" / "heic-exif-item-type-segfault.heic"


def test_a_file_that_crashes_the_decoder_is_a_400_and_the_worker_lives_on(client, face_jpeg):
    """pillow-heif 0.22 dies with SIGSEGV on this file; decoding in a child keeps this process alive."""
    response = client.post("/invocations", data=CRASHER.read_bytes(), content_type="image/heic")
    assert response.status_code == 400 and response.get_json()["error"] == "unreadable_image"
    body = {
        "images": [
            {"id": "crasher", "b64": base64.b64encode(CRASHER.read_bytes()).decode()},
            {"id": "face", "b64": base64.b64encode(face_jpeg).decode()},
        ]
    }
    crasher, face = client.post("/invocations", json=body).get_json()["results"]
    assert crasher["error"]["status"] == 400 and len(face["faces"]) == 1
    assert client.get("/ping").status_code == 200


def test_batch_answers_by_position_and_refuses_duplicate_ids(client, face_jpeg):
    group = (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes()
    entries = [
        {"id": "x", "b64": base64.b64encode(b"junk").decode()},
        {"id": "g", "b64": base64.b64encode(group).decode()},
        {"id": "f", "b64": base64.b64encode(face_jpeg).decode()},
    ]
    results = client.post("/invocations", json={"images": entries}).get_json()["results"]
    assert [r["id"] for r in results] == ["x", "g", "f"]
    assert (results[1]["width"], results[1]["height"]) == Image.open(io.BytesIO(group)).size
    assert (results[2]["width"], results[2]["height"]) == Image.open(io.BytesIO(face_jpeg)).size
    entries[2]["id"] = "g"
    response = client.post("/invocations", json={"images": entries})
    assert response.status_code == 400 and response.get_json()["error"] == "duplicate_image_id"


def test_the_pixels_of_one_request_are_capped(client, face_jpeg, monkeypatch):
    import gpu_endpoint.server as server

    width, height = Image.open(io.BytesIO(face_jpeg)).size
    monkeypatch.setattr(server, "MAX_REQUEST_PIXELS", int(width * height * 1.5))
    entry = base64.b64encode(face_jpeg).decode()
    first, second = client.post(
        "/invocations", json={"images": [{"id": "1", "b64": entry}, {"id": "2", "b64": entry}]}
    ).get_json()["results"]
    assert len(first["faces"]) == 1
    assert second["error"]["error"] == "request_pixel_budget" and second["error"]["status"] == 413
    small = client.post("/invocations", json={"images": [{"id": "1", "b64": entry}], "max_pixels": 1000})
    assert small.get_json()["results"][0]["error"]["error"] == "too_many_pixels"


def test_every_s3_error_is_that_images_error(engine, face_jpeg):
    from botocore.exceptions import ClientError

    from gpu_endpoint.server import create_app

    class S3:  # answers like S3 does when a policy denies one key
        def get_object(self, Bucket, Key):
            if Key == "denied.jpg":
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
            if Key == "slow.jpg":
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your rate"}}, "GetObject")
            return {"ContentLength": len(face_jpeg), "Body": io.BytesIO(face_jpeg)}

    client = create_app(engine, allowed_buckets=["b"], s3_client=S3()).test_client()
    body = {"images": [{"id": k, "s3_uri": f"s3://b/{k}"} for k in ("denied.jpg", "ok.jpg", "slow.jpg")]}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200
    denied, ok, slow = response.get_json()["results"]
    assert (denied["error"]["status"], denied["error"]["error"]) == (403, "access_denied")
    assert len(ok["faces"]) == 1
    assert slow["error"]["status"] == 503  # the client retries what is not the image's fault


def test_deeply_nested_json_is_a_400(client):
    response = client.post("/invocations", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert response.status_code == 400


def test_caller_given_boxes_are_embedded_aligned_when_a_face_is_inside(client, face_jpeg):
    b64 = base64.b64encode(face_jpeg).decode()
    detected = client.post("/invocations", json={"images": [{"b64": b64}]}).get_json()["results"][0]
    (face,) = detected["faces"]
    background = [0, 0, 40, 40]
    body = {"images": [{"b64": b64, "boxes": [face["box"], background]}], "detect": False}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    at_face, at_background = response.get_json()["results"][0]["faces"]
    assert (at_face["source"], at_face["aligned"]) == ("box", True) and at_face["box"] == face["box"]
    assert np.dot(at_face["embedding"], face["embedding"]) > 0.99  # the same face, the same vector
    assert (at_background["source"], at_background["aligned"]) == ("box", False)
    assert len(at_background["embedding"]) == len(face["embedding"]) and at_background["cohort_mean"] is not None
    # Detection and boxes together: the detected faces first, then the boxes.
    both = client.post("/invocations", json={"images": [{"b64": b64, "boxes": [background]}]}).get_json()
    assert [f.get("source") for f in both["results"][0]["faces"]] == [None, "box"]


@pytest.mark.parametrize(
    "boxes",
    [
        [[0, 0, 10, 40]],
        [[-1, 0, 40, 40]],
        [[0, 0, 40, 100000]],
        [["a", 0, 40, 40]],
        [[0, 0, 40]],
        "x",
        [[0, 0, 40, 40]] * 21,
    ],
)
def test_bad_boxes_are_that_images_400(client, face_jpeg, boxes):
    body = {"images": [{"b64": base64.b64encode(face_jpeg).decode(), "boxes": boxes}]}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200
    error = response.get_json()["results"][0]["error"]
    assert (error["status"], error["error"]) == (400, "bad_box") and error["message"]
    assert client.post("/invocations", json={**body, "detect": "no"}).status_code == 400


def test_an_empty_request_says_which_bundle_is_served_without_detecting(client, engine, monkeypatch):
    """How the API and the indexer learn the served version: no image, so no decode and no detection."""

    def no_detection(*args, **kwargs):
        raise AssertionError("an empty request must not reach the engine")

    monkeypatch.setattr(engine, "analyze", no_detection)
    body = client.post("/invocations", json={"images": []}).get_json()
    assert body["results"] == [] and body["model_version"] == engine.version
    assert body["threshold"] == engine.threshold and body["normalisation"] == engine.search_settings


def test_ping_fails_when_the_gpu_image_runs_without_cuda(client, monkeypatch):
    """The GPU image says it needs CUDA; this engine's sessions really run on the CPU (no GPU here),
    as they would where the driver is too old for the image's CUDA."""
    monkeypatch.setenv("FACE_ENGINE_REQUIRE_GPU", "1")
    response = client.get("/ping")
    assert response.status_code == 503
    body = response.get_json()
    assert "no working CUDA provider" in body["error"] and body["providers"] == ["CPUExecutionProvider"]
    monkeypatch.delenv("FACE_ENGINE_REQUIRE_GPU")
    assert client.get("/ping").status_code == 200
