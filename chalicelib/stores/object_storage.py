"""S3 layout and access: objects live under ``{kind}/{sub}/``, kind first.

Kind first, so that the bucket notification (S3 filters by key prefix and suffix only) can fire
for album photos alone (``photos/``), not for the indexer's thumbnails or for search keys.
Keys are built only from the verified ``sub`` and server-generated ids, so no request can name
another user's object. Buckets of the first layout (``users/{sub}/{kind}/``) are moved by
``python -m chalicelib.ops.layout_migration`` (docs/deploy.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, unquote_plus

from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event
from botocore.exceptions import ClientError

from chalicelib.errors import Unavailable
from chalicelib.shared.media_types import extension

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import (
        HeadObjectOutputTypeDef,
        NotificationConfigurationResponseTypeDef,
        ObjectIdentifierTypeDef,
    )

PHOTOS, THUMBS, PREVIEWS, KEYS = "photos", "thumbs", "previews", "keys"
KINDS = (PHOTOS, THUMBS, PREVIEWS, KEYS)  # the users' top-level prefixes; only PHOTOS is notified
INFERENCE = "inference"  # the backfill endpoint's requests and answers (chalicelib.backfill), a day at most
GRAPHS = "graphs"  # fanned-out regroupings' inputs and blocks (chalicelib.graph_fanout), a day at most

_USER_KEY = re.compile(rf"^(?P<kind>{'|'.join(KINDS)})/(?P<owner>[A-Za-z0-9-]+)/(?P<id>[0-9a-f]{{32}})\.[a-z]+$")


def user_prefixes(owner: str) -> list[str]:
    """Every prefix that holds objects of ``owner``: one per kind, and a regrouping's graphs (its
    faces' vectors: they go with the account, not a day later)."""
    return [f"{kind}/{owner}/" for kind in (*KINDS, GRAPHS)]


def photo_key(owner: str, photo_id: str, content_type: str) -> str:
    """The key of a photo's original."""
    return f"{PHOTOS}/{owner}/{photo_id}{extension(content_type)}"


def thumbnail_key(owner: str, photo_id: str) -> str:
    """The key of a photo's thumbnail."""
    return f"{THUMBS}/{owner}/{photo_id}.jpg"


def preview_key(owner: str, photo_id: str) -> str:
    """The key of a photo's browser-viewable preview."""
    return f"{PREVIEWS}/{owner}/{photo_id}.jpg"


def derived_keys(owner: str, photo_id: str) -> list[str]:
    """What the indexer makes from a photo (its thumbnail and its preview): removed with it."""
    return [thumbnail_key(owner, photo_id), preview_key(owner, photo_id)]


def parse_user_key(key: str) -> tuple[str, str, str] | None:
    """``(kind, owner, id)`` of any object of a user: ("photos", sub, photo_id), ("thumbs", sub,
    photo_id), ("previews", sub, photo_id), ("keys", sub, key_id); None for anything else."""
    match = _USER_KEY.match(key)
    return (match["kind"], match["owner"], match["id"]) if match else None


def parse_photo_key(key: str) -> tuple[str, str] | None:
    """``(owner, photo_id)`` for a photo key, or None for anything else."""
    parsed = parse_user_key(key)
    return (parsed[1], parsed[2]) if parsed and parsed[0] == PHOTOS else None


def upload_metadata(owner: str, photo_id: str, upload_token: str) -> dict[str, str]:
    """What a photo's upload form pins on the object (``x-amz-meta-*``): whose record it fills.
    The token is the record's and reaches only the client that asked for the form."""
    return {"owner": owner, "photo-id": photo_id, "upload-token": upload_token}


def is_upload_of(head: Mapping[str, object], owner: str, photo_id: str, upload_token: str | None) -> bool:
    """Whether the object (S3's HEAD answer) came through this record's own form. Records from
    before forms carried a token (``upload_token`` None) take any object at their key."""
    if upload_token is None:
        return True
    return head.get("Metadata", {}) == upload_metadata(owner, photo_id, upload_token)


class ObjectEvent(NamedTuple):
    """One record of an S3 notification: what happened to which object."""

    name: str  # S3's eventName: ObjectCreated:Put, ObjectRemoved:Delete, …
    bucket: str
    key: str  # decoded (S3 sends keys URL-encoded, spaces as +)


def object_events(message: dict) -> list[ObjectEvent | None]:
    """The records of an S3 notification (none if it holds no list of them), read through
    Powertools' typed event; None for a record S3 never sends (a hand-made message)."""
    if not isinstance(message.get("Records"), list):
        return []
    events: list[ObjectEvent | None] = []
    for record in S3Event(message).records:
        try:
            events.append(ObjectEvent(record.event_name, record.s3.bucket.name, unquote_plus(record.s3.get_object.key)))
        except (KeyError, TypeError, AttributeError):
            events.append(None)
    return events


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment`` (or ``inline``) with the name as the user gave it (RFC 6266: an ASCII
    fallback, then UTF-8)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "photo"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class ObjectStorage:
    """The photo bucket: keys, presigned forms and URLs, reads, copies and deletions."""

    def __init__(self, s3_client: S3Client, bucket: str):
        self.s3 = s3_client
        self.bucket = bucket

    def presigned_upload(
        self,
        key: str,
        content_type: str,
        max_bytes: int,
        expires_in: int,
        tags: dict | None = None,
        metadata: dict | None = None,
    ) -> dict:
        """A presigned POST whose policy pins the key, the type, the size range, any tags and any
        user metadata (``x-amz-meta-*``, answered by HEAD)."""
        fields = {"Content-Type": content_type}
        conditions: list = [{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]]
        for name, value in sorted((metadata or {}).items()):
            fields[f"x-amz-meta-{name}"] = value
            conditions.append({f"x-amz-meta-{name}": value})
        if tags:
            tag_set = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in sorted(tags.items()))
            fields["tagging"] = f"<Tagging><TagSet>{tag_set}</TagSet></Tagging>"
            conditions.append({"tagging": fields["tagging"]})
        return self.s3.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )

    def head(self, key: str) -> HeadObjectOutputTypeDef | None:
        """The object's ``ETag``, ``ContentLength`` and ``Metadata`` (S3's HEAD answer); None when
        there is no such object (other S3 errors raise)."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def metadata(self, key: str) -> dict | None:
        """The object's user metadata; None when there is no such object."""
        head = self.head(key)
        return None if head is None else head.get("Metadata", {})

    def read(self, key: str) -> bytes:
        """An object's bytes."""
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def read_range(self, key: str, first: int, stop: int) -> bytes:
        """Bytes ``first…stop - 1`` of an object (one ranged GET)."""
        return self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={first}-{stop - 1}")["Body"].read()

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write an object the app alone reads back (a fanned-out graph's parts)."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/octet-stream")

    def put_json(self, key: str, document: dict | list) -> None:
        """Write ``document`` as a JSON object."""
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=json.dumps(document).encode(), ContentType="application/json"
        )

    def put_jpeg(self, key: str, data: bytes) -> None:
        """A rendition the indexer derives from a photo (its thumbnail, its preview)."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="image/jpeg")

    def presigned_get(
        self,
        key: str,
        expires_in: int,
        content_type: str | None = None,
        filename: str | None = None,
        download: bool = False,
    ) -> str:
        """A GET URL. For a user's original, S3 is told the type and the disposition to answer
        with (signed into the URL): whatever bytes an upload smuggled in, a browser gets an image
        type, never a page. ``download``: an attachment (a download, not a view)."""
        params = {"Bucket": self.bucket, "Key": key}
        if content_type is not None:
            params["ResponseContentType"] = content_type
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename, "attachment" if download else "inline")
        return self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def delete_keys(self, keys: Iterable[str], attempts: int = 3) -> None:
        """Delete every key; S3 answers a batch with an error per key it could not delete (throttling,
        a lock), which are tried again, and reported (``Unavailable``) if they keep failing."""
        pending = [k for k in keys if k]
        for _ in range(attempts):
            failed: dict[str, str] = {}
            for start in range(0, len(pending), 1000):
                batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in pending[start : start + 1000]]
                answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                failed.update({e["Key"]: e.get("Code", "error") for e in answer.get("Errors", [])})
            if not failed:
                return
            pending = list(failed)
        shown = ", ".join(f"{key} ({code})" for key, code in list(failed.items())[:5])
        raise Unavailable(f"{len(failed)} stored objects could not be deleted: {shown}; try again", retry_after=60)

    def list_keys(self, prefix: str) -> list:
        """Every key under ``prefix``."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def copy(self, source: str, target: str) -> None:
        """Copy an object within the bucket."""
        self.s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})

    def list_user_keys(self, owner: str) -> list:
        """Every key of the owner's, under each of their prefixes."""
        return [key for prefix in user_prefixes(owner) for key in self.list_keys(prefix)]

    def delete_user_objects(self, owner: str) -> int:
        """Delete every object of ``owner``; returns how many."""
        keys = self.list_user_keys(owner)
        self.delete_keys(keys)
        return len(keys)

    def find_key_photo(self, owner: str, key_id: str) -> str | None:
        """The object of a key photo, whatever its extension: one listing, not a HEAD per type."""
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{KEYS}/{owner}/{key_id}.", MaxKeys=1)
        return next((item["Key"] for item in listed.get("Contents", [])), None)

    def exists(self, key: str) -> bool:
        """Whether there is an object at ``key``."""
        return self.metadata(key) is not None

    def notification_configuration(self) -> NotificationConfigurationResponseTypeDef:
        """The bucket's event notifications."""
        return self.s3.get_bucket_notification_configuration(Bucket=self.bucket)

    def check(self) -> None:
        """Raise unless the bucket answers."""
        self.s3.head_bucket(Bucket=self.bucket)


# Search key photos carry this tag; the bucket's lifecycle rule expires tagged objects after a day.
SEARCH_KEY_TAG = {"kind": "search-key"}


def key_photo_key(owner: str, key_id: str, content_type: str) -> str:
    """The key of a key photo."""
    return f"{KEYS}/{owner}/{key_id}{extension(content_type)}"
