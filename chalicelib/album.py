"""The album: upload requests, listing, one photo, deletion of photos and accounts."""

from __future__ import annotations

import contextlib
import functools
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

from chalicelib.clock import now_ms
from chalicelib.cursors import encode_position
from chalicelib.edge.request_models import FileToUpload, Page
from chalicelib.errors import Conflict, NotFound, RateLimited
from chalicelib.photo_views import PhotoViews
from chalicelib.records import Photo, User
from chalicelib.settings import Settings
from chalicelib.stores.key_face_store import KeyFaceStore
from chalicelib.stores.lease_store import LeaseStore
from chalicelib.stores.object_storage import (
    KEYS,
    ObjectStorage,
    derived_keys,
    is_upload_of,
    parse_user_key,
    photo_key,
    upload_metadata,
)
from chalicelib.stores.people_store import PeopleStore
from chalicelib.stores.photo_store import DUPLICATE, NEAR_DUPLICATE_BITS, PhotoStore
from chalicelib.stores.rate_limits import RateLimits

_PHOTO_ID = re.compile(r"^[0-9a-f]{32}$")


class Album:
    """The owner's photos: uploads, the timeline, one photo, the trash, deletion and quotas."""

    def __init__(
        self,
        photo_store: PhotoStore,
        object_storage: ObjectStorage,
        settings: Settings,
        people: PeopleStore | None = None,
        leases: LeaseStore | None = None,
        key_faces: KeyFaceStore | None = None,
        rates: RateLimits | None = None,
    ):
        self.photo_store = photo_store
        self.usage = photo_store.usage
        self.object_storage = object_storage
        self.settings = settings
        self.people = people  # to keep people's counts and covers right when photos go
        self.leases = leases or LeaseStore(photo_store.db)
        # Kept beside the album for search: the key photos' analyses and their hourly count.
        self.key_faces = key_faces or KeyFaceStore(photo_store.db)
        self.rates = rates or RateLimits(photo_store.db)
        self.views = PhotoViews(object_storage, settings)  # search and people answer photos the same way

    # Uploads ----------------------------------------------------------------
    def create_uploads(self, user: User, asked: list[FileToUpload]) -> list[dict]:
        """A presigned POST per file, in the order asked. A file the client says (by its SHA-256)
        is already in the album, or repeats an earlier file of the request, is answered
        ``{"photo_id", "duplicate_of"}`` instead, without a record or quota. The indexer checks the
        bytes themselves, whatever a client says or does not say."""
        first: dict[str, str] = {}  # sha256 → the photo that holds (or will hold) those bytes
        for item in asked:
            sha = item.sha256
            if sha and sha not in first and (photo := self.photo_store.photo_with_content(user.sub, sha)):
                first[sha] = photo["photo_id"]
        new: dict[str, FileToUpload] = {}  # photo id → its file
        answers: list[dict | str] = []  # a new photo's id, or the answer for a duplicate
        for item in asked:
            if item.sha256 is None or item.sha256 not in first:
                photo_id = uuid.uuid4().hex
                new[photo_id] = item
                answers.append(photo_id)
                if item.sha256:
                    first[item.sha256] = photo_id
            else:
                answers.append({"photo_id": first[item.sha256], "duplicate_of": first[item.sha256]})
        posts: dict[str, dict] = {}
        if new:
            with self._one_at_a_time(user.sub, "uploads"):  # the room counted is the room taken
                self._check_room(user.sub, list(new.values()))
                photos, posts = self._new_photos(user.sub, new)
                self.photo_store.add_photos(photos)
        return [posts[answer] if isinstance(answer, str) else answer for answer in answers]

    @contextlib.contextmanager
    def _one_at_a_time(self, owner: str, action: str, wait: float = 5.0) -> Iterator[None]:
        """The owner's requests of ``action`` one after another (a lease in the store, so across
        Lambda containers too): a count checked inside holds until the write it allowed is made."""
        name, give_up = f"{owner}|{action}", time.monotonic() + wait
        while (token := self.leases.take(name, seconds=30)) is None:
            if time.monotonic() > give_up:
                raise RateLimited("another request of yours is being prepared; try again", retry_after=1)
            time.sleep(0.02)
        try:
            yield
        finally:
            self.leases.release(name, token)

    def _check_room(self, owner: str, files: list[FileToUpload]) -> None:
        self.expire_abandoned_uploads(owner)
        pending = self.photo_store.count_photos(owner, status="pending")
        if pending + len(files) > self.settings.max_pending_uploads:
            raise RateLimited(
                f"{pending} uploads are still pending; wait for them to finish before asking for more",
                code="too_many_pending_uploads",
                retry_after=60,
            )
        self._reserve_quota(owner, files)

    def _new_photos(self, owner: str, files: dict[str, FileToUpload]) -> tuple[list[Photo], dict[str, dict]]:
        """Pending records and their presigned POSTs (by photo id)."""
        uploaded_at = now_ms()
        photos: list[Photo] = []
        posts = {}
        for photo_id, item in files.items():
            key, upload_token = photo_key(owner, photo_id, item.content_type), uuid.uuid4().hex
            photos.append(
                {
                    "owner": owner,
                    "photo_id": photo_id,
                    "key": key,
                    "filename": item.filename,
                    "content_type": item.content_type,
                    "declared_size": item.size,
                    "status": "pending",
                    "error": None,
                    "face_count": 0,
                    "width": None,
                    "height": None,
                    "taken_at": None,
                    "thumbnail_key": None,
                    "uploaded_at": uploaded_at,
                    "upload_token": upload_token,
                }
            )
            # The policy caps the object at the declared size, so quotas count real bytes at most,
            # and pins the metadata that ties the object to this record (the indexer checks both:
            # the token is known only to whoever received this form).
            post = self.object_storage.presigned_upload(
                key,
                item.content_type,
                item.size,
                self.settings.upload_url_ttl,
                metadata=upload_metadata(owner, photo_id, upload_token),
            )
            posts[photo_id] = {
                "photo_id": photo_id,
                "url": post["url"],
                "fields": post["fields"],
                "expires_in": self.settings.upload_url_ttl,
            }
        return photos, posts

    def _reserve_quota(self, owner: str, files: list[FileToUpload]) -> None:
        s = self.settings
        size = sum(f.size for f in files)
        held = functools.partial(self.photo_store.held_usage, owner)
        if not self.usage.reserve(owner, len(files), size, s.max_photos_per_user, s.max_bytes_per_user, held):
            usage = self.usage.of(owner)
            raise RateLimited(
                f"your album holds {usage['photos']} photos and {usage['bytes']} bytes; the limits are "
                f"{s.max_photos_per_user} photos and {s.max_bytes_per_user} bytes: delete photos to make room",
                code="quota_exceeded",
            )

    def cancel_upload(self, user: User, photo_id: str) -> None:
        """Forget a ``pending`` photo whose upload the client gave up on, with whatever part of it
        arrived: no ghost tile, and the quota it reserved is free again. An upload already indexed
        (or failed) is a photo of the album: it goes to the trash like any other."""
        photo = self.owned_photo(user, photo_id)
        if photo["status"] != "pending" or photo.get("trashed_at"):
            raise Conflict(
                "the upload has finished: the photo is in the album (move it to the trash instead)",
                code="upload_finished",
            )
        if self.photo_store.delete_photo(user.sub, photo_id) is not None:
            self.object_storage.delete_keys([photo["key"]])  # an object arriving later is an orphan: removed

    def expire_abandoned_uploads(self, owner: str | None = None, limit: int = 100) -> int:
        """Forget ``pending`` photos whose upload never arrived, once their presigned POST has
        expired (plus a grace period for uploads still in flight): one owner's (on listing), or
        anyone's (the scheduled ``purge_trash`` function). A photo whose object arrived through its
        own form is left to the indexer, however late."""
        cutoff = now_ms() - timedelta(seconds=self.settings.upload_url_ttl + self.settings.pending_grace)
        expired = 0
        for photo in self.photo_store.expired_pending(owner, cutoff, limit):
            head = self.object_storage.head(photo["key"])
            if head is not None and is_upload_of(head, photo["owner"], photo["photo_id"], photo.get("upload_token")):
                continue
            if self.photo_store.delete_photo(photo["owner"], photo["photo_id"]) is not None:
                expired += 1
        return expired

    # Reading ------------------------------------------------------------------
    def list_photos(self, user: User, page: Page) -> dict:
        """A page of the timeline, newest first, each photo presented with its signed URLs."""
        if page.after is None:
            self.expire_abandoned_uploads(user.sub)
            self.photo_store.backfill_timeline(user.sub)
        rows, last = self.photo_store.list_photos(user.sub, page.limit, page.after)
        return {"photos": [self.views.present(row) for row in rows], "next_cursor": encode_position(last)}

    def status(self, user: User, photo_ids: list[str]) -> dict:
        """``{"photo_ids": [...]}`` → those photos as listed (fresh URLs included), one call instead of a
        poll per photo; ids of no photo of the user's are answered in ``not_found``."""
        found = self.photo_store.photos_by_id(user.sub, [i for i in photo_ids if _PHOTO_ID.match(i)])
        return {
            "photos": [self.views.present(found[i]) for i in photo_ids if i in found],
            "not_found": [i for i in photo_ids if i not in found],
        }

    def months(self, user: User) -> dict:
        """The timeline's months with their photo counts, newest first (for headers and a scrubber);
        an upload that never arrived is not counted."""
        self.expire_abandoned_uploads(user.sub)
        self.photo_store.backfill_timeline(user.sub)
        return {"months": [{"month": m, "count": n} for m, n in self.photo_store.month_counts(user.sub)]}

    def get_photo(self, user: User, photo_id: str) -> dict:
        """One photo of the caller's, with its faces and their people."""
        photo = self.owned_photo(user, photo_id)
        result = self.views.present(photo)
        result["faces"] = [
            {
                "face_id": f["face_id"],
                "box": f["box"],
                "score": f["score"],
                "person_id": f.get("person_id"),
                "assigned_by": f.get("assigned_by"),
            }
            for f in self.photo_store.list_faces(user.sub, photo_id)
        ]
        # The same picture re-encoded or resized (exact copies never get this far: see duplicates).
        result["near_duplicates"] = self.photo_store.near_duplicates(user.sub, photo, NEAR_DUPLICATE_BITS)
        return result

    def owned_photo(self, user: User, photo_id: str) -> Photo:
        """The caller's photo by id; NotFound for a malformed id or another user's photo."""
        # Another user's id and a made-up id look the same: 404.
        photo = self.photo_store.get_photo(user.sub, photo_id) if _PHOTO_ID.match(photo_id or "") else None
        if photo is None:
            raise NotFound("no such photo")
        return photo

    # The trash and deletion -------------------------------------------------------
    def trash(self, user: User, photo_ids: list[str]) -> dict:
        """``{"photo_ids": [...]}`` into the trash: out of the album, search and people until restored
        or purged (``trash_days`` later, or at once by emptying the trash). Quota is freed by the purge.
        Idempotent; a duplicate's record (no object, no faces) is deleted at once."""
        trashed, not_found = [], []
        at = now_ms()
        for photo_id in photo_ids:
            photo = self.photo_store.get_photo(user.sub, photo_id) if _PHOTO_ID.match(photo_id) else None
            if photo is None:
                not_found.append(photo_id)
                continue
            if photo["status"] == DUPLICATE:  # out of the album already and holds nothing: its record goes
                self.photo_store.delete_photo(user.sub, photo_id)
                trashed.append(photo_id)
                continue
            persons = {f.get("person_id") for f in self.photo_store.list_faces(user.sub, photo_id)}
            if self.photo_store.trash_photo(user.sub, photo_id, at) and self.people is not None:
                self.people.refresh(user.sub, persons)
            trashed.append(photo_id)
        return {"trashed": trashed, "not_found": not_found}

    def trash_one(self, user: User, photo_id: str) -> None:
        """Move one photo to the trash (NotFound if it is not in the album)."""
        if self.trash(user, [photo_id])["not_found"]:
            raise NotFound("no such photo")

    def restore(self, user: User, photo_ids: list[str]) -> dict:
        """``{"photo_ids": [...]}`` back from the trash, with their faces and people."""
        restored, not_found = [], []
        people_ids = self.people.ids(user.sub) if self.people is not None else set()
        for photo_id in photo_ids:
            faces = (
                self.photo_store.restore_photo(user.sub, photo_id, people_ids) if _PHOTO_ID.match(photo_id) else None
            )
            if faces is None:
                not_found.append(photo_id)
                continue
            if self.people is not None:
                self.people.refresh(user.sub, {f.get("person_id") for f in faces})
            restored.append(photo_id)
        return {"restored": restored, "not_found": not_found}

    def list_trash(self, user: User, page: Page) -> dict:
        """A page of the trash, most recently trashed first (expired photos are purged first)."""
        if page.after is None:
            self.purge_expired(user.sub)
        rows, last = self.photo_store.list_trash(user.sub, page.limit, page.after)
        return {"photos": [self.views.present(row) for row in rows], "next_cursor": encode_position(last)}

    def purge_one(self, user: User, photo_id: str) -> None:
        """Delete one photo of the trash for good, with its objects and faces."""
        photo = self.owned_photo(user, photo_id)
        if not photo.get("trashed_at"):
            raise Conflict("only a photo in the trash can be deleted for good; trash it first", code="not_in_trash")
        self._purge(user.sub, [photo])

    def empty_trash(self, user: User, limit: int = 500) -> dict:
        """Purge the trash at once, ``limit`` photos per call: ``remaining`` says whether to call again."""
        photos = self.photo_store.trashed_before(now_ms() + timedelta(days=1), limit + 1, owner=user.sub)
        self._purge(user.sub, photos[:limit])
        return {"purged": len(photos[:limit]), "remaining": len(photos) > limit}

    def purge_expired(self, owner: str | None = None, limit: int = 100) -> int:
        """Purge photos trashed more than ``trash_days`` ago: one owner's (on listing), or anyone's
        (the scheduled ``purge_trash`` function)."""
        expired = self.photo_store.trashed_before(
            now_ms() - timedelta(days=self.settings.trash_days), limit, owner=owner
        )
        by_owner: dict[str, list[Photo]] = {}
        for photo in expired:
            by_owner.setdefault(photo["owner"], []).append(photo)
        for who, photos in by_owner.items():
            self._purge(who, photos)
        return len(expired)

    def _purge(self, owner: str, photos: list[Photo]) -> None:
        """Delete photos for good. The originals first: if S3 fails the records stay and the call can
        be repeated. Then each record with its faces, then the thumbnails and previews by their fixed keys, in that
        order: an indexer still working on a photo either wrote before (removed here) or finds the
        record gone after its writes and removes them itself (Indexer)."""
        if not photos:
            return
        self.object_storage.delete_keys([p["key"] for p in photos if p.get("key")])
        persons: set = set()
        for photo in photos:
            persons |= {f.get("person_id") for f in self.photo_store.list_faces(owner, photo["photo_id"])}
            self.photo_store.delete_photo(owner, photo["photo_id"])
        self.object_storage.delete_keys([key for p in photos for key in derived_keys(owner, p["photo_id"])])
        if self.people is not None:
            self.people.refresh(owner, persons)

    def summary(self, user: User) -> dict:
        """What the owner's Profile and the album's progress line show: photos by state, and the
        storage the quota counts (the trash included, until it is purged) against its limits."""
        self.expire_abandoned_uploads(user.sub)
        s = self.settings
        return {
            "photos": self.photo_store.album_counts(user.sub),
            "usage": self.usage.of(user.sub),
            "limits": {"photos": s.max_photos_per_user, "bytes": s.max_bytes_per_user},
        }

    def delete_account_data(self, user: User) -> dict:
        """Everything of the user's in the stores and the bucket goes; the counts removed."""
        objects = self.object_storage.delete_user_objects(user.sub)
        counts = self.photo_store.delete_owner(user.sub)
        self.key_faces.delete_owner(user.sub)
        self.rates.delete_owner(user.sub)
        if self.people is not None:
            counts["people"] = self.people.delete_owner(user.sub)
        # What an indexer in flight wrote after the first pass (it also undoes its own writes).
        objects += self.object_storage.delete_user_objects(user.sub)
        return dict(counts, objects=objects)

    def sweep(self, owner: str) -> dict:
        """Remove what no photo record owns: faces, originals and thumbnails left by a deletion
        that raced an indexer (or a crash between two writes), and abandoned uploads."""
        objects = self.object_storage.list_user_keys(owner)  # listed before the records: see below
        known = self.photo_store.photo_ids(owner)  # a photo's record is always written before its object
        orphans = [
            key for key in objects if (parsed := parse_user_key(key)) and parsed[0] != KEYS and parsed[2] not in known
        ]
        self.object_storage.delete_keys(orphans)
        return {
            "faces": self.photo_store.delete_orphan_faces(owner),
            "objects": len(orphans),
            "abandoned_uploads": self.expire_abandoned_uploads(owner),
        }
