"""The SageMaker bring-your-own-container contract: ``GET /ping``, ``POST /invocations``.

``POST /invocations`` takes one image as the body (image/jpeg, image/png,
image/webp, image/heic, image/heif, image/gif), or ``application/json``::

    {"images": [{"id": "a", "b64": "..."} | {"id": "b", "s3_uri": "s3://bucket/key", "boxes": [[x, y, w, h]]}],
     "max_faces": 50, "min_face_size": 20, "max_pixels": 50000000, "detect": true}

and answers ``{"model_version", "threshold", "normalisation", "grouping", "results": [{"id", "width", "height",
"faces": [...]}]}`` (``normalisation``: the bundle's cohort score normalisation for search, or null; each face
then carries ``cohort_mean`` and ``cohort_std``; ``grouping``: the bundle's people grouping calibration).
``boxes``: faces the detector missed, answered after the detected ones (``detect: false``: only them), each
with ``"source": "box"`` and ``aligned`` (landmarks found inside the box, or the box embedded as it is); a
box outside the image or under 16 px is that image's 400 ``bad_box``. Faces come with
boxes ``[x, y, w, h]`` and landmarks in original pixels after EXIF orientation.
A bad single image is the request's status (400, 413, 415); in a JSON batch each
image that fails carries its own ``error`` (an S3 error too) and the others are still
answered. Results come in the order of the request; ids must be unique. All images of
one request together may decode to at most MAX_REQUEST_PIXELS; ``max_pixels`` lowers the
per-image limit (search keys). ``{"images": []}`` answers the bundle's fields with no results: how a
caller learns which bundle is served without sending a photo.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, jsonify, request

from chalicelib.shared.images import MAX_PIXELS, ImageError, decode_image
from chalicelib.shared.media_types import SUPPORTED

from .engine import FaceEngine

log = logging.getLogger("face_engine")

MAX_REQUEST_BYTES = int(os.environ.get("MAX_REQUEST_BYTES", 30 * 1024 * 1024))
MAX_IMAGES = int(os.environ.get("MAX_IMAGES_PER_REQUEST", 16))
MAX_BOXES, MIN_BOX = 20, 16  # caller-given face boxes per image, and their smallest side
# Decoded pixels of one request, all images together (~3 bytes each: 100 MP is ~300 MB).
MAX_REQUEST_PIXELS = int(os.environ.get("MAX_REQUEST_PIXELS", 2 * MAX_PIXELS))


class BadRequest(Exception):
    """A request the endpoint refuses: its status and code go back in the JSON answer."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def _int_option(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}")
    return value


class S3Reader:
    """Reads ``s3://`` images for requests too large for SageMaker's 6 MB payload,
    only from the buckets named in ALLOWED_S3_BUCKETS."""

    def __init__(self, allowed_buckets: list[str], client=None):
        self.allowed = set(allowed_buckets)
        self._client = client

    def read(self, uri: str, max_bytes: int) -> bytes:
        """The bytes of an ``s3://bucket/key`` object in an allowed bucket, at most ``max_bytes``."""
        if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:]:
            raise ImageError("s3_uri must look like s3://bucket/key", 400, "bad_s3_uri")
        bucket, key = uri[5:].split("/", 1)
        if bucket not in self.allowed:
            raise ImageError(f"bucket {bucket!r} is not readable by this endpoint", 403, "bucket_not_allowed")
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        try:
            obj = self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ImageError(f"{uri} does not exist", 404, "not_found") from exc
            if code in ("AccessDenied", "403", "Forbidden"):
                raise ImageError(f"{uri} cannot be read by the endpoint (access denied)", 403, "access_denied") from exc
            raise ImageError(
                f"{uri} could not be read right now ({code or 'S3 error'})", 503, "s3_unavailable"
            ) from exc
        except BotoCoreError as exc:
            raise ImageError(
                f"{uri} could not be read right now ({exc.__class__.__name__})", 503, "s3_unavailable"
            ) from exc
        if obj["ContentLength"] > max_bytes:
            raise ImageError(f"{uri} is {obj['ContentLength']} bytes; the limit is {max_bytes}", 413, "file_too_large")
        return obj["Body"].read()


def _answer(engine_, results: list):
    return jsonify(
        model_version=engine_.version,
        threshold=engine_.threshold,
        normalisation=engine_.search_settings,
        grouping=engine_.grouping,
        results=results,
    )


def create_app(
    engine: FaceEngine | None = None,
    bundle_dir: str | None = None,
    allowed_buckets: list[str] | None = None,
    s3_client=None,
) -> Flask:
    """The WSGI app; its settings come from the environment unless given."""
    app = Flask("face_endpoint")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    state = {"engine": engine}
    if allowed_buckets is None:
        allowed_buckets = [b for b in os.environ.get("ALLOWED_S3_BUCKETS", "").split(",") if b]
    s3 = S3Reader(allowed_buckets, s3_client)

    def get_engine() -> FaceEngine:
        engine = state["engine"]
        if engine is None:
            engine = state["engine"] = FaceEngine(
                bundle_dir or os.environ.get("MODEL_DIR", "/opt/ml/model"),
                threads=int(os.environ.get("ORT_THREADS", "0")) or None,
                batch_wait_ms=float(os.environ.get("FACE_ENGINE_BATCH_WAIT_MS", "0")),
            )
        return engine

    _answer_errors_in_json(app)

    @app.get("/ping")
    def ping():
        try:
            engine_ = get_engine()
        except Exception as exc:  # the container stays up and says why
            log.exception("model bundle failed to load")
            return jsonify(status="unavailable", error=str(exc)), 503
        if os.environ.get("FACE_ENGINE_REQUIRE_GPU") == "1" and "CUDAExecutionProvider" not in engine_.active_providers:
            # The GPU image on an instance whose driver cannot run its CUDA: SageMaker must not route
            # traffic to a CPU fallback sized for a GPU (one worker, GPU batches).
            message = "no working CUDA provider: the instance's NVIDIA driver cannot run this image's CUDA"
            log.error("%s (sessions run on %s)", message, engine_.active_providers)
            return jsonify(status="unavailable", error=message, providers=engine_.active_providers), 503
        return jsonify(status="ok", model_version=engine_.version, providers=engine_.active_providers)

    @app.post("/invocations")
    def invocations():
        timer = _Timer()
        engine_ = get_engine()
        invocation = Invocation.parse(request, s3)
        timer.lap("decode")
        loaded = [(d, boxes) for _, d, boxes, err in invocation.items if err is None]
        found = iter(
            engine_.analyze(
                [d.image for d, _ in loaded],
                invocation.min_face,
                invocation.max_faces,
                boxes=[boxes for _, boxes in loaded],
                detect=invocation.detect,
            )
            if loaded  # {"images": []} asks which bundle is served: nothing to detect
            else ()
        )
        timer.lap("analyze")
        response = _answer(engine_, [_result(ident, d, err, found) for ident, d, _, err in invocation.items])
        timer.lap("encode")
        response.headers["Server-Timing"] = timer.header()
        return response

    return app


def _answer_errors_in_json(app: Flask) -> None:
    """Every failure as ``{"error", "message"}`` with its status; an unexpected one is logged."""

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        return jsonify(error=exc.code, message=exc.message), exc.status

    @app.errorhandler(ImageError)
    def bad_image(exc: ImageError):
        return jsonify(error=exc.code, message=exc.message), exc.status

    @app.errorhandler(413)
    def too_large(_exc):
        return jsonify(error="request_too_large", message=f"requests are limited to {MAX_REQUEST_BYTES} bytes"), 413

    @app.errorhandler(Exception)
    def unexpected(exc):
        code = getattr(exc, "code", 500)
        if isinstance(code, int) and 400 <= code < 500:
            return jsonify(error="bad_request", message=str(exc)), code
        log.exception("inference failed")
        return jsonify(error="internal_error", message="inference failed"), 500


class _Timer:
    """Where a request's time went, for its ``Server-Timing`` header (read by benchmarks.served_path)."""

    def __init__(self):
        self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, (now - self.last) * 1000))
        self.last = now

    def header(self) -> str:
        return ", ".join(f"{name};dur={ms:.1f}" for name, ms in self.laps)


@dataclass
class Invocation:
    """One ``/invocations`` request, parsed and its images decoded: each item is (id, decoded image
    or None, the caller's boxes, the image's own error or None), in the request's order."""

    items: list[tuple[str, Any, list | None, ImageError | None]]
    max_faces: int = 50
    min_face: int = 20
    detect: bool = True

    @classmethod
    def parse(cls, request_, s3: S3Reader) -> Invocation:
        """One ``/invocations`` request parsed from JSON or raw image bytes (BadRequest otherwise)."""
        content_type = (request_.mimetype or "").lower()
        if content_type == "application/json":
            return cls._from_json(request_, s3)
        if content_type in SUPPORTED:
            return cls([("0", decode_image(request_.get_data()), None, None)])  # raises: the request's status
        if content_type.startswith("image/"):
            raise BadRequest(f"{content_type} is not supported", 415, "unsupported_media_type")
        raise BadRequest(
            f"send an image or application/json, not {content_type or 'nothing'}", 415, "unsupported_media_type"
        )

    @classmethod
    def _from_json(cls, request_, s3: S3Reader) -> Invocation:
        try:
            body = request_.get_json(silent=True)
        except RecursionError:  # nesting deeper than the parser goes
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise BadRequest('body must be {"images": [{"id", "b64" | "s3_uri"}, ...]}')
        images = body["images"]
        if len(images) > MAX_IMAGES:
            raise BadRequest(f"at most {MAX_IMAGES} images per request", 413, "too_many_images")
        max_faces = _int_option(body, "max_faces", 50, 1, 500)
        min_face = _int_option(body, "min_face_size", 20, 12, 1000)
        max_pixels = _int_option(body, "max_pixels", MAX_PIXELS, 1, MAX_PIXELS)
        ids = [_item_id(i, item) for i, item in enumerate(images)]
        if len(set(ids)) != len(ids):
            raise BadRequest("each image needs its own id", 400, "duplicate_image_id")
        if not isinstance(body.get("detect", True), bool):
            raise BadRequest("detect must be true or false")
        budget = _PixelBudget(MAX_REQUEST_PIXELS)
        items = []
        for ident, item in zip(ids, images):
            _, decoded, error = _load_item(ident, item, s3, max_pixels, budget)
            items.append((ident, decoded, item.get("boxes") if isinstance(item, dict) else None, error))
        return cls(items, max_faces, min_face, body.get("detect", True))


def _result(ident: str, decoded, error: ImageError | None, found) -> dict:
    """One image's entry of the answer; ``found``: the engine's faces of the decoded images, in order."""
    if error is not None:
        return {"id": ident, "error": {"error": error.code, "status": error.status, "message": error.message}}
    return {"id": ident, "width": decoded.width, "height": decoded.height, "faces": [f.to_json() for f in next(found)]}


def _item_id(index: int, item) -> str:
    return str(item.get("id", index)) if isinstance(item, dict) else str(index)


class _PixelBudget:
    """What is left of one request's decoded-pixel allowance."""

    def __init__(self, total: int):
        self.total = self.left = total

    def take(self, decoded) -> None:
        self.left -= decoded.width * decoded.height


def _load_item(ident: str, item, s3: S3Reader, max_pixels: int, budget: _PixelBudget):
    try:
        if not isinstance(item, dict) or ("b64" in item) == ("s3_uri" in item):
            raise ImageError("each image needs exactly one of b64 or s3_uri", 400, "bad_image_entry")
        if "b64" in item:
            try:
                data = base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ImageError("b64 is not valid base64", 400, "bad_base64") from None
        else:
            data = s3.read(item["s3_uri"], MAX_REQUEST_BYTES)
        limit = min(max_pixels, budget.left)
        try:
            decoded = decode_image(data, max_pixels=limit)
        except ImageError as exc:
            if exc.code == "too_many_pixels" and limit < max_pixels:
                raise ImageError(
                    f"the images of this request together exceed {budget.total} pixels; "
                    "send this one in another request",
                    413,
                    "request_pixel_budget",
                ) from exc
            raise
        budget.take(decoded)
        check_boxes(item.get("boxes"), decoded.width, decoded.height)
        return ident, decoded, None
    except ImageError as exc:
        return ident, None, exc


def check_boxes(boxes, width: int, height: int) -> None:
    """Caller-given face boxes: at most ``MAX_BOXES`` [x, y, w, h], inside the image, ≥ 16 px."""
    if boxes is None:
        return
    if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise ImageError(f"boxes must be a list of at most {MAX_BOXES} [x, y, w, h]", 400, "bad_box")
    for box in boxes:
        numbers = isinstance(box, list) and len(box) == 4
        numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        if not numbers:
            raise ImageError("each box must be [x, y, w, h] in pixels", 400, "bad_box")
        x, y, w, h = box
        if w < MIN_BOX or h < MIN_BOX or x < 0 or y < 0 or x + w > width or y + h > height:
            raise ImageError(
                f"a box must lie inside the {width}x{height} image and be at least {MIN_BOX} px wide and high",
                400,
                "bad_box",
            )
