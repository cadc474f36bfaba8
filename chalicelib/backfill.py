"""Reindexing through SageMaker asynchronous inference, apart from the real-time endpoint.

A reindex (a new bundle, every photo of every album) would otherwise queue behind, and slow, the
photos users upload now. With ``BACKFILL_ENDPOINT_NAME`` set, the indexer hands each reindexed
photo to an asynchronous endpoint running the same image and bundle: the request (the real-time
call's JSON, ``face_client.photo_request``) is written under ``inference/requests/``, SageMaker
queues it (its own instances, scaled on the backlog), writes the answer under
``inference/answers/`` and publishes a notification that reaches the photo-events queue; the
indexer then finishes the photo from that answer. Photos with faces the user drew keep the
real-time path (their boxes travel in the request too, but are rare enough not to need it).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from chalicelib.face_client import FaceClient, FaceServiceError, photo_request
from chalicelib.records import Analysis
from chalicelib.stores.object_storage import INFERENCE, ObjectStorage

if TYPE_CHECKING:
    from types_boto3_sagemaker_runtime import SageMakerRuntimeClient

_ID = re.compile(r"[^A-Za-z0-9-]")


def is_notification(message: dict) -> bool:
    """An asynchronous inference's outcome, as SageMaker publishes it (raw SNS delivery)."""
    return "invocationStatus" in message and "requestParameters" in message


class Backfill:
    """Reindexing through a SageMaker asynchronous endpoint: submits photos, takes the answers back."""

    def __init__(self, runtime: SageMakerRuntimeClient, endpoint_name: str, object_storage: ObjectStorage):
        self.runtime, self.endpoint_name, self.object_storage = runtime, endpoint_name, object_storage

    def submit(self, key: str, inference_id: str) -> str:
        """Queue one photo; the request's S3 key."""
        inference_id = _ID.sub("-", inference_id)[:64]
        request_key = f"{INFERENCE}/requests/{inference_id}.json"
        request = photo_request(self.object_storage.bucket, key)
        self.object_storage.put_json(request_key, request)
        self.runtime.invoke_endpoint_async(
            EndpointName=self.endpoint_name,
            InputLocation=f"s3://{self.object_storage.bucket}/{request_key}",
            ContentType="application/json",
            InferenceId=inference_id,
        )
        return request_key

    def outcome(self, notification: dict) -> tuple[str, Analysis | FaceServiceError]:
        """The photo's key and its answer (or why it failed) from SageMaker's notification; the
        request and the answer are removed once read."""
        request_key = _key_of(notification["requestParameters"]["inputLocation"])
        request = json.loads(self.object_storage.read(request_key))
        photo_key = request["images"][0]["id"]
        answer_key = _key_of(notification.get("responseParameters", {}).get("outputLocation", "")) or None
        if notification["invocationStatus"] != "Completed" or answer_key is None:
            reason = notification.get("failureReason") or "the backfill endpoint failed"
            result: Analysis | FaceServiceError = FaceServiceError(reason, retriable=True)
        else:
            try:
                result = FaceClient.parse(self.object_storage.read(answer_key))
            except FaceServiceError as exc:
                result = exc
        self.object_storage.delete_keys([request_key, answer_key or ""])
        return photo_key, result


def _key_of(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/") if uri else ""
