"""One client for the face endpoint: SageMaker runtime in the cloud, HTTP locally.

Both speak the endpoint's JSON contract (gpu_endpoint/server.py).  Throttling,
5xx, timeouts, refused connections and unreadable answers are retried with
exponential backoff and full jitter, a bounded number of times; a 4xx about
the photo itself is final.  Every call has a ``Deadline`` (the caller's time
limit: the Lambda's remaining time, API Gateway's 29 s): attempts and their
timeouts shrink to fit it, so the caller can still answer or record a failure.
"""

from __future__ import annotations

import base64
import json
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.clock import Deadline
from chalicelib.records import Analysis, ModelInfo

if TYPE_CHECKING:
    from types_boto3_sagemaker_runtime import SageMakerRuntimeClient

# SageMaker's InvokeEndpoint takes at most 6 MB of request body; base64 adds a third.
MAX_INLINE_BYTES = 4 * 1024 * 1024
_Answer = TypeVar("_Answer", Analysis, ModelInfo)


class FaceServiceError(Exception):
    """The face endpoint did not answer as it should; ``retriable`` when trying again may help."""

    def __init__(self, message: str, retriable: bool, status: int | None = None):
        super().__init__(message)
        self.message, self.retriable, self.status = message, retriable, status


class Transport(Protocol):
    """Sends one request body to the face endpoint and returns its answer's body."""

    def invoke(self, body: bytes, timeout: float) -> bytes:
        """Send one request body to the endpoint within ``timeout`` seconds; the answer's bytes."""
        ...


class HttpTransport:
    """The endpoint's own server (local stack, tests)."""

    def __init__(self, url: str):
        import requests  # here: the cloud's transport is SageMaker's, and the API's cold start does without

        self.url = url.rstrip("/") + "/invocations"
        self.session = requests.Session()

    def invoke(self, body: bytes, timeout: float) -> bytes:
        """POST ``body`` to the endpoint's ``/invocations``; its answer's bytes."""
        import requests

        try:
            response = self.session.post(
                self.url, data=body, timeout=timeout, headers={"Content-Type": "application/json"}
            )
        except requests.Timeout:
            raise FaceServiceError("the face service timed out", retriable=True) from None
        except requests.RequestException as exc:
            raise FaceServiceError(
                f"the face service is unreachable ({exc.__class__.__name__})", retriable=True
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise FaceServiceError(f"the face service answered {response.status_code}", True, response.status_code)
        if response.status_code >= 400:
            raise FaceServiceError(_message(response.content), False, response.status_code)
        return response.content


class SageMakerTransport:
    """``runtime_for(seconds)``: a sagemaker-runtime client whose read timeout is that many
    seconds (botocore sets timeouts per client, not per call)."""

    def __init__(self, runtime_for: Callable[[int], SageMakerRuntimeClient], endpoint_name: str):
        self.runtime_for, self.endpoint_name = runtime_for, endpoint_name

    def invoke(self, body: bytes, timeout: float) -> bytes:
        """``InvokeEndpoint`` with ``body``; its answer's bytes."""
        try:
            response = self.runtime_for(max(1, math.ceil(timeout))).invoke_endpoint(
                EndpointName=self.endpoint_name, Body=body, ContentType="application/json", Accept="application/json"
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            original = exc.response.get("OriginalStatusCode")  # the model container's own status
            status = original if isinstance(original, int) else exc.response["ResponseMetadata"]["HTTPStatusCode"]
            retriable = code in ("ThrottlingException", "ServiceUnavailable", "InternalFailure") or status >= 500
            raise FaceServiceError(f"SageMaker {code}: {exc}", retriable, status) from exc
        except BotoCoreError as exc:  # timeouts, connection errors
            raise FaceServiceError(f"SageMaker unreachable ({exc.__class__.__name__})", retriable=True) from exc
        return response["Body"].read()


def _message(content: bytes) -> str:
    try:
        return str(json.loads(content).get("message", content[:200]))
    except (ValueError, AttributeError):
        return content[:200].decode("utf-8", "replace")


def _request(image: dict, max_faces: int, min_face_size: int, max_pixels: int | None) -> dict:
    request = {"images": [image], "max_faces": max_faces, "min_face_size": min_face_size}
    if max_pixels is not None:
        request["max_pixels"] = max_pixels
    return request


def photo_request(
    bucket: str,
    key: str,
    max_faces: int = 50,
    min_face_size: int = 20,
    max_pixels: int | None = None,
    boxes: list | None = None,
    detect: bool = True,
    data: bytes | None = None,
) -> dict:
    """The endpoint's request for one photo of the album (the real-time call's and the backfill's).
    ``boxes``: faces to embed at given [x, y, w, h] (after the detected ones; ``detect=False``: only
    them). ``data``: the object's bytes, already read by the caller: sent along when they fit one
    request, so that the endpoint does not download the photo again."""
    image: dict = {"id": key}
    if data is not None and len(data) <= MAX_INLINE_BYTES:
        image["b64"] = base64.b64encode(data).decode()
    else:
        image["s3_uri"] = f"s3://{bucket}/{key}"
    if boxes:
        image["boxes"] = boxes
    request = _request(image, max_faces, min_face_size, max_pixels)
    if not detect:
        request["detect"] = False
    return request


class FaceClient:
    """``timeout``: the longest one attempt may take; ``min_attempt``: an attempt with less
    time left than this is not started."""

    def __init__(
        self,
        transport,
        attempts: int = 4,
        timeout: float = 30.0,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        min_attempt: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        model_info_ttl: float = 300.0,
    ):
        self.transport, self.attempts, self.timeout = transport, attempts, timeout
        self.base_delay, self.max_delay, self.min_attempt, self.sleep = base_delay, max_delay, min_attempt, sleep
        self.model_info_ttl = model_info_ttl
        self._model_info: tuple[float, ModelInfo | None] = (0.0, None)

    def analyze_s3(self, bucket: str, key: str, deadline: Deadline | None = None, **options: Any) -> Analysis:
        """The endpoint's result for one photo in S3: ``{"model_version", "width", "height", "faces"}``;
        ``options`` are ``photo_request``'s."""
        return self._call(photo_request(bucket, key, **options), deadline, self.parse)

    def analyze_bytes(
        self,
        data: bytes,
        deadline: Deadline | None = None,
        max_faces: int = 50,
        min_face_size: int = 20,
        max_pixels: int | None = None,
    ) -> Analysis:
        """The faces of one image sent inline (a key photo), with the served bundle's facts."""
        return self._call(
            _request({"id": "key", "b64": base64.b64encode(data).decode()}, max_faces, min_face_size, max_pixels),
            deadline,
            self.parse,
        )

    def model_version(self) -> str:
        """The bundle version the endpoint serves now."""
        return self.model_info()["model_version"]

    def model_info(self, deadline: Deadline | None = None) -> ModelInfo:
        """``{"model_version", "threshold", "normalisation", "grouping"}`` of the bundle the endpoint
        serves now: a request with no image (nothing is decoded or detected)."""
        return self._call({"images": []}, deadline, self._parse_info)

    def served_model(self, deadline: Deadline | None = None) -> ModelInfo:
        """``model_info``, asked at most once per ``model_info_ttl`` seconds."""
        fetched_at, info = self._model_info
        if info is None or time.time() - fetched_at > self.model_info_ttl:
            info = self.model_info(deadline)
            self._model_info = (time.time(), info)
        return info

    def _call(self, request: dict, deadline: Deadline | None, parse: Callable[[bytes], _Answer]) -> _Answer:
        body = json.dumps(request).encode()
        deadline = deadline or Deadline(self.attempts * (self.timeout + self.max_delay))
        shortest = min(self.min_attempt, self.timeout)
        for attempt in range(1, self.attempts + 1):
            if deadline.left() < shortest:
                raise FaceServiceError("the face service did not answer in the time this request has", True)
            try:
                return parse(self.transport.invoke(body, min(self.timeout, deadline.left())))
            except FaceServiceError as exc:
                if not exc.retriable or attempt == self.attempts:
                    raise
                # Full jitter: spread retries of many photos over the window; never past the deadline.
                pause = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                if deadline.left() - pause < shortest:
                    raise
                self.sleep(pause)
        raise AssertionError("unreachable")

    @staticmethod
    def _parse_info(raw: bytes) -> ModelInfo:
        try:
            body = json.loads(raw)
            return ModelInfo(
                model_version=body["model_version"],
                threshold=body["threshold"],
                normalisation=body["normalisation"],
                grouping=body["grouping"],
            )
        except (ValueError, KeyError, TypeError):
            raise FaceServiceError("the face service sent an unreadable answer", retriable=True) from None

    @staticmethod
    def parse(raw: bytes) -> Analysis:
        """One photo's result from the endpoint's answer (``FaceServiceError`` for its error)."""
        try:
            body = json.loads(raw)
            (result,) = body["results"]
            version = body["model_version"]
        except (ValueError, KeyError, TypeError):
            raise FaceServiceError("the face service sent an unreadable answer", retriable=True) from None
        if "error" in result:
            error = result["error"]
            status = int(error.get("status", 500))
            raise FaceServiceError(error.get("message", "the photo could not be analysed"), status >= 500, status)
        return Analysis(
            model_version=version,
            threshold=body.get("threshold"),
            normalisation=body.get("normalisation"),
            grouping=body.get("grouping"),
            width=result["width"],
            height=result["height"],
            faces=result["faces"],
        )
