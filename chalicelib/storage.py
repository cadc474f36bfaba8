"""S3 layout and access: every object of a user lives under ``users/{sub}/``.

Keys are built only from the verified ``sub`` and server-generated ids, so no
request can name another user's object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from botocore.exceptions import ClientError

CONTENT_TYPE_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/gif": ".gif",
}

_PHOTO_KEY = re.compile(r"^users/(?P<owner>[A-Za-z0-9-]+)/photos/(?P<photo_id>[0-9a-f]{32})(?P<ext>\.[a-z]+)$")
_USER_KEY = re.compile(r"^users/[A-Za-z0-9-]+/(?P<kind>[a-z]+)/(?P<id>[0-9a-f]{32})\.[a-z]+$")


def user_prefix(owner: str) -> str:
    return f"users/{owner}/"


def photo_key(owner: str, photo_id: str, content_type: str) -> str:
    return f"users/{owner}/photos/{photo_id}{CONTENT_TYPE_EXTENSIONS[content_type]}"


def thumbnail_key(owner: str, photo_id: str) -> str:
    return f"users/{owner}/thumbs/{photo_id}.jpg"


def parse_user_key(key: str) -> tuple[str, str] | None:
    """``(kind, id)`` of any object of a user: ("photos", photo_id), ("thumbs", photo_id), ("keys", key_id)."""
    match = _USER_KEY.match(key)
    return (match["kind"], match["id"]) if match else None


def parse_photo_key(key: str) -> tuple[str, str] | None:
    """``(owner, photo_id)`` for a photo key, or None for anything else."""
    match = _PHOTO_KEY.match(key)
    return (match["owner"], match["photo_id"]) if match else None


class PhotoStorage:
    def __init__(self, s3_client, bucket: str):
        self.s3 = s3_client
        self.bucket = bucket

    def presigned_upload(
        self, key: str, content_type: str, max_bytes: int, expires_in: int, tags: dict | None = None
    ) -> dict:
        """A presigned POST whose policy pins the key, the type, the size range and any tags."""
        fields = {"Content-Type": content_type}
        conditions = [{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]]
        if tags:
            tag_set = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in sorted(tags.items()))
            fields["tagging"] = f"<Tagging><TagSet>{tag_set}</TagSet></Tagging>"
            conditions.append({"tagging": fields["tagging"]})
        return self.s3.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )

    def presigned_get(self, key: str, expires_in: int) -> str:
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def delete_keys(self, keys: Iterable[str]) -> None:
        keys = [k for k in keys if k]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def list_keys(self, prefix: str) -> list:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        keys = self.list_keys(prefix)
        self.delete_keys(keys)
        return len(keys)

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def check(self) -> None:
        self.s3.head_bucket(Bucket=self.bucket)


# Search key photos carry this tag; the bucket's lifecycle rule expires tagged objects after a day.
SEARCH_KEY_TAG = {"kind": "search-key"}


def key_photo_key(owner: str, key_id: str, content_type: str) -> str:
    return f"users/{owner}/keys/{key_id}{CONTENT_TYPE_EXTENSIONS[content_type]}"
