"""From an S3 notification to stored faces: validate, thumbnail, detect + embed, store.

Exactly once in effect: face ids are deterministic (photo id + rank) and
written by upsert, and a photo already indexed from the same object version
(ETag) with the same model is skipped, so redelivered, duplicated or
concurrent events leave one set of faces.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, List
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from .face_client import FaceClient, FaceServiceError
from .images import ImageError, decode_image, make_thumbnail
from .observability import logger
from .settings import Settings
from .storage import PhotoStorage, parse_photo_key, thumbnail_key
from .store import PhotoStore

_EQUIVALENT_TYPES = {"image/heif": "image/heic"}


class RetryLater(Exception):
    """The face service stayed unavailable: the event must be delivered again."""


def _same_type(declared: str, actual: str) -> bool:
    return _EQUIVALENT_TYPES.get(declared, declared) == _EQUIVALENT_TYPES.get(actual, actual)


class Indexer:
    def __init__(self, store: PhotoStore, storage: PhotoStorage, faces: FaceClient, settings: Settings):
        self.store, self.storage, self.faces, self.settings = store, storage, faces, settings

    def handle_notification(self, message: dict) -> List[str]:
        """One S3 notification (as S3 sends it to SQS); returns what happened to each record."""
        if message.get("Event") == "s3:TestEvent":
            return ["test_event"]
        outcomes = []
        for record in message.get("Records", []):
            name = record.get("eventName", "")
            bucket = record.get("s3", {}).get("bucket", {}).get("name")
            key = unquote_plus(record.get("s3", {}).get("object", {}).get("key", ""))
            if bucket != self.storage.bucket:
                outcomes.append("other_bucket")
            elif name.startswith("ObjectCreated"):
                outcomes.append(self.index(key, force=bool(message.get("reindex"))))
            elif name.startswith("ObjectRemoved"):
                outcomes.append(self.forget(key))
            else:
                outcomes.append("ignored")
        return outcomes

    def index(self, key: str, force: bool = False) -> str:
        """``force``: re-embed even an object already indexed (reindexing with a new bundle)."""
        parsed = parse_photo_key(key)
        if parsed is None:
            return "ignored"  # thumbnails, search keys, anything that is not an album photo
        owner, photo_id = parsed
        photo = self.store.get_photo(owner, photo_id)
        if photo is None or photo["key"] != key:
            # Deleted through the API before its upload event arrived: nobody can see it, so remove it.
            self.storage.delete_keys([key])
            return "orphan_removed"
        try:
            head = self.storage.s3.head_object(Bucket=self.storage.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return "object_gone"
            raise
        etag = head["ETag"]
        if not force and photo["status"] == "indexed" and photo.get("source_etag") == etag:
            return "duplicate"
        if head["ContentLength"] > self.settings.max_upload_bytes:
            return self._fail(photo, f"the file is {head['ContentLength']} bytes; the limit is "
                                     f"{self.settings.max_upload_bytes}", etag)
        data = self.storage.s3.get_object(Bucket=self.storage.bucket, Key=key)["Body"].read()
        try:
            decoded = decode_image(data, max_bytes=self.settings.max_upload_bytes)
        except ImageError as exc:
            return self._fail(photo, exc.message, etag)
        if not _same_type(photo["content_type"], decoded.content_type):
            return self._fail(photo, f"the upload was declared {photo['content_type']} but the file is "
                                     f"{decoded.content_type}", etag)
        thumb_key = thumbnail_key(owner, photo_id)
        self.storage.s3.put_object(Bucket=self.storage.bucket, Key=thumb_key, Body=make_thumbnail(decoded.image),
                                   ContentType="image/jpeg")
        try:
            result = self.faces.analyze_s3(self.storage.bucket, key)
        except FaceServiceError as exc:
            if exc.retriable:
                self._fail(photo, "face detection is unavailable right now; it will be retried", etag,
                           retriable=True, thumbnail=thumb_key)
                raise RetryLater(exc.message) from exc
            return self._fail(photo, exc.message, etag, thumbnail=thumb_key)
        version = result["model_version"]
        faces = [{"face_id": f"{photo_id}-{i:03d}", "face_index": i, "box": f["box"], "score": f["score"],
                  "landmarks": f["landmarks"], "embedding": f["embedding"], "model_version": version}
                 for i, f in enumerate(result["faces"])]
        self.store.replace_faces(owner, photo_id, faces)
        self.store.update_photo(owner, photo_id, {
            "status": "indexed", "error": None, "retriable": False, "face_count": len(faces),
            "width": decoded.width, "height": decoded.height, "taken_at": decoded.taken_at,
            "thumbnail_key": thumb_key, "model_version": version, "source_etag": etag,
            "indexed_at": datetime.now(timezone.utc),
        })
        logger.info("photo indexed", extra={"user": owner, "photo_id": photo_id, "faces": len(faces)})
        return "indexed"

    def _fail(self, photo: dict, message: str, etag: str, retriable: bool = False, thumbnail: str = None) -> str:
        fields: Dict = {"status": "failed", "error": message, "retriable": retriable, "source_etag": etag,
                        "face_count": 0}
        if thumbnail:
            fields["thumbnail_key"] = thumbnail
        self.store.update_photo(photo["owner"], photo["photo_id"], fields)
        if not retriable:
            self.store.replace_faces(photo["owner"], photo["photo_id"], [])
        logger.warning("photo failed", extra={"user": photo["owner"], "photo_id": photo["photo_id"],
                                              "error": message, "retriable": retriable})
        return "failed"

    def forget(self, key: str) -> str:
        """The object was deleted outside the API: drop its record, faces and thumbnail."""
        parsed = parse_photo_key(key)
        if parsed is None:
            return "ignored"
        owner, photo_id = parsed
        photo = self.store.get_photo(owner, photo_id)
        if photo is None or photo["key"] != key:
            return "already_forgotten"
        self.storage.delete_keys([thumbnail_key(owner, photo_id)])
        self.store.delete_photo(owner, photo_id)
        return "forgotten"
