"""From an S3 notification to stored faces: validate, thumbnail, detect + embed, store.

Exactly once in effect: face ids are deterministic (photo id + rank) and
written by upsert, and a photo already indexed from the same object version
(ETag) with the same model is skipped, so redelivered, repeated or
concurrent events leave one set of faces.

A photo whose bytes are those of another photo of the owner (SHA-256) is marked
a duplicate of it and its object removed: uploading a folder twice makes no
second copy. Two identical photos indexed at the same moment can both stay.

A photo trashed while it is being indexed has its new faces moved to the trash
after the indexer's last write (the trash sets its flag before moving faces).
A photo deleted while it is being indexed leaves nothing behind: the writes
that follow the face call end with a conditional update of the photo record,
and when the record is gone the indexer removes what it wrote (the deletion
removes the record before the faces and the thumbnail, see ``Album``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.backfill import Backfill, is_notification
from chalicelib.clock import Deadline
from chalicelib.face_client import FaceClient, FaceServiceError
from chalicelib.grouping import GroupingParams
from chalicelib.observability import logger
from chalicelib.people import People
from chalicelib.people_jobs import PeopleJobs
from chalicelib.records import MANUAL, Analysis, Face, Photo, drawn_face_record, face_record, timeline_at
from chalicelib.settings import Settings
from chalicelib.shared.boxes import box_iou
from chalicelib.shared.images import (
    PREVIEW_SIZE,
    THUMBNAIL_SIZE,
    DecodedImage,
    ImageError,
    decode_image,
    difference_hash,
    jpeg_rendition,
)
from chalicelib.shared.media_types import BROWSER_TYPES
from chalicelib.stores.object_storage import (
    ObjectStorage,
    derived_keys,
    is_upload_of,
    object_events,
    parse_photo_key,
    preview_key,
    thumbnail_key,
)
from chalicelib.stores.people_store import SAME_FACE_IOU
from chalicelib.stores.photo_store import PhotoStore, picture_hash_fields


class RetryLater(Exception):
    """The face service stayed unavailable: the event must be delivered again."""


@dataclass(frozen=True)
class Rendered:
    """A photo read and decoded once, and the renditions written from it."""

    data: bytes
    decoded: DecodedImage
    thumbnail: str
    preview: str | None


class Indexer:
    """Turns S3 upload events into indexed photos: faces, thumbnails, duplicates, people."""

    def __init__(
        self,
        photo_store: PhotoStore,
        object_storage: ObjectStorage,
        face_client: FaceClient,
        settings: Settings,
        people: People | None = None,
        jobs: PeopleJobs | None = None,
        backfill: Backfill | None = None,
    ):
        self.photo_store, self.object_storage, self.face_client, self.settings = (
            photo_store,
            object_storage,
            face_client,
            settings,
        )
        self.people, self.jobs, self.backfill = people, jobs, backfill

    def handle_notification(self, message: dict, deadline: Deadline | None = None) -> list[str]:
        """One S3 notification (as S3 sends it to SQS); returns what happened to each record.
        A reindex message carries its target bundle version in ``reindex``."""
        if message.get("Event") == "s3:TestEvent":
            return ["test_event"]
        if is_notification(message):
            return [self.complete_backfill(message, deadline)]
        outcomes = []
        for event in object_events(message):
            if event is None:  # not what S3 sends: nothing to index, no retry
                outcomes.append("malformed")
                continue
            name, bucket, key = event
            if bucket != self.object_storage.bucket:
                outcomes.append("other_bucket")
            elif name.startswith("ObjectCreated"):
                target = message.get("reindex")
                outcomes.append(
                    self.index(
                        key, deadline, force=bool(target), target_version=target if isinstance(target, str) else None
                    )
                )
            elif name.startswith("ObjectRemoved"):
                outcomes.append(self.forget(key))
            else:
                outcomes.append("ignored")
        return outcomes

    def index(
        self,
        key: str,
        deadline: Deadline | None = None,
        force: bool = False,
        target_version: str | None = None,
        analysis: Analysis | None = None,
    ) -> str:
        """``force``: re-embed even an object already indexed (reindexing with a new bundle),
        unless it is already indexed with ``target_version``; with a backfill endpoint, that is
        handed to it. ``analysis``: the backfill's answer for this photo, instead of a face call.
        Returns what happened, in a word."""
        arrived = self._arrived(key, force, target_version)
        if isinstance(arrived, str):
            return arrived
        photo, etag = arrived
        # Faces the user drew are embedded again at their boxes (a new bundle); boxes the user
        # removed as wrong stay removed.
        drawn = [f for f in self.photo_store.list_faces(photo["owner"], photo["photo_id"]) if f.get("source") == MANUAL]
        if analysis is None and force and self.backfill is not None and not drawn:
            self.backfill.submit(key, f"{photo['photo_id']}-{etag}")
            return "sent_to_backfill"
        rendered = self._render(photo, etag, force)
        if isinstance(rendered, str):
            return rendered
        try:
            result = analysis or self.face_client.analyze_s3(
                self.object_storage.bucket, key, deadline, boxes=[f["box"] for f in drawn] or None, data=rendered.data
            )
        except FaceServiceError as exc:
            return self._face_call_failed(photo, etag, rendered.thumbnail, exc)
        return self._store(photo, etag, rendered, result, drawn)

    def _arrived(self, key: str, force: bool, target_version: str | None) -> str | tuple[Photo, str]:
        """The photo's record and its object's ETag when the object is this record's and needs
        indexing; else what happened instead."""
        parsed = parse_photo_key(key)
        if parsed is None:
            return "ignored"  # thumbnails, search keys, anything that is not an album photo
        owner, photo_id = parsed
        photo = self.photo_store.get_photo(owner, photo_id)
        if photo is None or photo["key"] != key:
            # Deleted through the API before its upload event arrived: nobody can see it, so remove it.
            self.object_storage.delete_keys([key])
            return "orphan_removed"
        head = self.object_storage.head(key)
        if head is None:
            return "object_gone"
        if not is_upload_of(head, owner, photo_id, photo.get("upload_token")):
            # Not through this record's form (a tampered form where S3 does not enforce its
            # policy): removed, and the record waits for its own upload or expires.
            self.object_storage.delete_keys([key])
            logger.warning("an object not from its record's upload form removed", extra={"user": owner, "key": key})
            return "foreign_upload_removed"
        etag, size = head["ETag"], head["ContentLength"]
        current = photo["status"] == "indexed" and photo.get("source_etag") == etag
        if current and not force:
            return "already_indexed"
        if current and target_version and photo.get("model_version") == target_version:
            return "already_current"  # a second reindex run queued it again
        if size > self.settings.max_upload_bytes:
            return self._fail(photo, f"the file is {size} bytes; the limit is {self.settings.max_upload_bytes}", etag)
        if size > (photo.get("declared_size") or size):
            # The quota counted the declared size (S3 enforces it; a store that does not gets here).
            return self._fail(photo, f"the file is {size} bytes, more than the {photo['declared_size']} declared", etag)
        return photo, etag

    def _render(self, photo: Photo, etag: str, force: bool) -> str | Rendered:
        """The photo read once, checked against the album's other photos, decoded (JPEGs at reduced
        scale: for the renditions and the picture hash only) and its renditions written."""
        owner, photo_id = photo["owner"], photo["photo_id"]
        data = self.object_storage.read(photo["key"])
        content_sha256 = hashlib.sha256(data).hexdigest()
        if not force and (original := self.photo_store.photo_with_content(owner, content_sha256, other_than=photo_id)):
            return self._duplicate(photo, original["photo_id"])
        self.photo_store.update_photo(owner, photo_id, {"content_sha256": content_sha256})
        try:
            decoded = decode_image(data, max_bytes=self.settings.max_upload_bytes, max_side=PREVIEW_SIZE)
        except ImageError as exc:
            return self._fail(photo, exc.message, etag)
        thumb_key = thumbnail_key(owner, photo_id)
        self.object_storage.put_jpeg(thumb_key, jpeg_rendition(decoded.image, THUMBNAIL_SIZE))
        preview = None  # a photo no browser shows (HEIC) is viewed through a large JPEG of it
        if decoded.content_type not in BROWSER_TYPES:
            preview = preview_key(owner, photo_id)
            self.object_storage.put_jpeg(preview, jpeg_rendition(decoded.image, PREVIEW_SIZE))
        return Rendered(data, decoded, thumb_key, preview)

    def _face_call_failed(self, photo: Photo, etag: str, thumbnail: str, exc: FaceServiceError) -> str:
        """A failure about the photo is final; the service being down is retried (``RetryLater``)."""
        if not exc.retriable:
            return self._fail(photo, exc.message, etag, thumbnail=thumbnail)
        message = "face detection is unavailable right now; it will be retried"
        outcome = self._fail(photo, message, etag, retriable=True, thumbnail=thumbnail)
        if outcome != "failed":
            return outcome
        raise RetryLater(exc.message) from exc

    def _store(self, photo: Photo, etag: str, rendered: Rendered, result: Analysis, drawn: list[Face]) -> str:
        """The photo's faces and its record from the face service's answer; then its people."""
        owner, photo_id, decoded = photo["owner"], photo["photo_id"], rendered.decoded
        version = result["model_version"]
        removed = photo.get("removed_boxes") or []
        detected = [
            f
            for f in result["faces"]
            if f.get("source") != "box" and all(box_iou(f["box"], box) < SAME_FACE_IOU for box in removed)
        ]
        faces = [face_record(f"{photo_id}-{i:03d}", i, f, version) for i, f in enumerate(detected)]
        faces += [
            drawn_face_record(old["face_id"], old["face_index"], f, version)
            for old, f in zip(drawn, (f for f in result["faces"] if f.get("source") == "box"))
        ]
        if self.people is not None:
            faces = self.people.people_store.carry_decisions(owner, photo_id, faces)
        self.photo_store.replace_faces(owner, photo_id, faces)
        still_there = self.photo_store.update_photo(
            owner,
            photo_id,
            {
                "status": "indexed",
                "error": None,
                "retriable": False,
                "face_count": len(faces),
                "width": decoded.width,
                "height": decoded.height,
                # What the bytes are, whatever the name or the declared type said (a PNG saved as .jpg).
                "content_type": decoded.content_type,
                "taken_at": decoded.taken_at,
                "timeline_at": timeline_at(photo["uploaded_at"], decoded.taken_at),
                "thumbnail_key": rendered.thumbnail,
                "preview_key": rendered.preview,
                **picture_hash_fields(difference_hash(decoded.image)),
                "model_version": version,
                "source_etag": etag,
                "indexed_at": datetime.now(UTC),
            },
        )
        if not still_there:
            return self._undo(owner, photo_id)
        if (now := self.photo_store.get_photo(owner, photo_id)) and now.get("trashed_at"):
            # Trashed while this indexer worked: its faces follow the photo into the trash.
            self.photo_store.move_faces_to_trash(owner, photo_id)
            return "indexed_in_trash"
        grouping = GroupingParams.from_model_info(result)
        if self.people is not None and grouping is not None and faces:
            self._assign_people(owner, photo_id, version, grouping)
        logger.info("photo indexed", extra={"user": owner, "photo_id": photo_id, "faces": len(faces)})
        return "indexed"

    def _assign_people(self, owner: str, photo_id: str, version: str, grouping: GroupingParams) -> None:
        """The photo is indexed whatever happens here: a failed assignment is left to the regrouping."""
        assert self.people is not None
        new_faces: list[str] | None
        try:
            new_faces = self.people.assign_photo(owner, photo_id, version, grouping)["unassigned_faces"]
        except Exception:
            logger.exception("people assignment failed; left to the regrouping", extra={"photo_id": photo_id})
            new_faces = None  # a full regrouping
        if (new_faces is None or new_faces) and self.jobs is not None:
            self.jobs.request(owner, new_faces=new_faces)

    def _fail(
        self, photo: Photo, message: str, etag: str, retriable: bool = False, thumbnail: str | None = None
    ) -> str:
        fields: dict = {
            "status": "failed",
            "error": message,
            "retriable": retriable,
            "source_etag": etag,
            "face_count": 0,
        }
        if thumbnail:
            fields["thumbnail_key"] = thumbnail
        if not self.photo_store.update_photo(photo["owner"], photo["photo_id"], fields):
            return self._undo(photo["owner"], photo["photo_id"])
        if not retriable:
            self.photo_store.replace_faces(photo["owner"], photo["photo_id"], [])
        logger.warning(
            "photo failed",
            extra={"user": photo["owner"], "photo_id": photo["photo_id"], "error": message, "retriable": retriable},
        )
        return "failed"

    def _duplicate(self, photo: Photo, original_id: str) -> str:
        owner, photo_id = photo["owner"], photo["photo_id"]
        if not self.photo_store.mark_duplicate(owner, photo, original_id):
            return self._undo(owner, photo_id)
        # The record no longer names the object, so its removal event is not read as a deletion.
        self.object_storage.delete_keys([photo["key"], *derived_keys(owner, photo_id)])
        logger.info("photo is a duplicate", extra={"user": owner, "photo_id": photo_id, "duplicate_of": original_id})
        return "duplicate_photo"

    def _undo(self, owner: str, photo_id: str) -> str:
        """The photo was deleted while this indexer worked: remove what it wrote."""
        self.photo_store.replace_faces(owner, photo_id, [])
        self.object_storage.delete_keys(derived_keys(owner, photo_id))
        logger.info(
            "photo deleted during indexing; its faces and thumbnail removed",
            extra={"user": owner, "photo_id": photo_id},
        )
        return "deleted_during_indexing"

    def complete_backfill(self, notification: dict, deadline: Deadline | None = None) -> str:
        """The backfill endpoint's answer for one photo: indexed from it. A failure leaves the photo
        as it was (indexed with its bundle until then); the next reindex run sends it again."""
        if self.backfill is None:
            return "ignored"
        key, result = self.backfill.outcome(notification)
        if isinstance(result, FaceServiceError):
            logger.warning(
                "backfill failed; left for the next reindex run", extra={"key": key, "error": result.message}
            )
            return "backfill_failed"
        return self.index(key, deadline, force=True, target_version=result["model_version"], analysis=result)

    def forget(self, key: str) -> str:
        """The object was deleted outside the API: drop its record, faces and thumbnail."""
        parsed = parse_photo_key(key)
        if parsed is None:
            return "ignored"
        owner, photo_id = parsed
        photo = self.photo_store.get_photo(owner, photo_id)
        if photo is None or photo["key"] != key:
            # Deleted through the API: sweep what an indexer that raced the deletion may have left.
            self._undo(owner, photo_id)
            return "already_forgotten"
        if self.object_storage.exists(key):
            return "object_back"  # a later upload replaced it (S3's events are not ordered)
        if photo["status"] == "pending":
            return "left_to_expire"  # its own upload may still come; else the pending upload expires
        self.object_storage.delete_keys(derived_keys(owner, photo_id))
        self.photo_store.delete_photo(owner, photo_id)
        return "forgotten"
