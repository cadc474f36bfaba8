"""Photos and their faces in MongoDB, through the pymongo API: the album's records, the trash's
faces, and the writes that keep the owner's quota ledger and change token in step with them.

The same class runs on MongoDB Atlas (pymongo), the embedded on-disk store
(tinymongo's SQLite backend) and mongomock; only ``database.open_database``
knows which.  Every query is scoped by ``owner``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime

import numpy as np
from bson.binary import Binary, BinaryVectorDtype
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from chalicelib.records import Face, Photo, photo_size, timeline_at
from chalicelib.stores.owner_versions import OwnerVersions
from chalicelib.stores.usage_store import UsageStore

_NO_ID = {"_id": 0}
Position = tuple[datetime, str]  # a row's place in a page order: (its time, its photo_id)
_NO_VECTOR = {"_id": 0, "embedding": 0}
# A photo's status: in the album while pending, indexed or failed; a duplicate (the same bytes as
# another photo of the owner) is out of the album and keeps a record for its uploader only.
ALBUM_STATUSES = ("pending", "indexed", "failed")
DUPLICATE = "duplicate"
_IN_ALBUM = {"status": {"$in": list(ALBUM_STATUSES)}, "trashed_at": None}  # neither a duplicate nor in the trash


def vector_to_binary(vector) -> Binary:
    """A vector as BSON's float32 vector type."""
    return Binary.from_vector(np.asarray(vector, dtype=np.float32).tolist(), BinaryVectorDtype.FLOAT32)


def binary_to_vector(value) -> np.ndarray:
    """A stored BSON vector as a float32 array."""
    return np.asarray(Binary(value, subtype=9).as_vector().data, dtype=np.float32)


_BANDS = 8  # a 64-bit picture hash in 8 bands of 8 bits: hashes ≤ 7 bits apart share at least one band
NEAR_DUPLICATE_BITS = 6  # at most this many of the 64 bits differ: the same picture re-encoded or resized


def picture_hash_fields(value: int) -> dict:
    """A photo's perceptual hash as stored: the hash, and its bands (indexed) to find near-duplicates."""
    return {
        "picture_hash": f"{value:016x}",
        "picture_bands": [f"{i}:{(value >> (8 * i)) & 0xFF:02x}" for i in range(_BANDS)],
    }


def _reindex_scope(owner: str | None) -> dict:
    query: dict = {"$or": [{"status": "indexed"}, {"status": "failed", "retriable": True}]}
    if owner:
        query["owner"] = owner
    return query


ATLAS_INDEX_NAME = "face_vectors"
ATLAS_MAX_CANDIDATES = 10_000  # Atlas refuses numCandidates over 10,000 or a limit over numCandidates


def atlas_pipeline(owner: str, model_version: str, vector, limit: int, min_cosine: float) -> list:
    """The ``$vectorSearch`` pipeline: the owner's faces of one model version nearest to ``vector``."""
    return [
        {
            "$vectorSearch": {
                "index": ATLAS_INDEX_NAME,
                "path": "embedding",
                "queryVector": [float(v) for v in np.asarray(vector, np.float32)],
                "numCandidates": min(ATLAS_MAX_CANDIDATES, max(100, 10 * limit)),
                "limit": min(limit, ATLAS_MAX_CANDIDATES),
                "filter": {"owner": owner, "model_version": model_version},
            }
        },
        {
            "$project": {
                "_id": 0,
                "face_id": 1,
                "photo_id": 1,
                "cohort_mean": 1,
                "cohort_std": 1,
                "score": {"$meta": "vectorSearchScore"},
            }
        },
        # Atlas scores cosine as (1 + cos) / 2.
        {"$match": {"score": {"$gte": (1 + min_cosine) / 2}}},
    ]


class PhotoStore:
    """Photos and their faces, in and out of the trash, scoped by owner."""

    def __init__(self, database):
        self.db = database
        self.photos = database["photos"]
        self.faces = database["faces"]
        self.trashed_faces = database["trashed_faces"]  # faces of photos in the trash: out of search and people
        self.usage = UsageStore(database)  # released here as photos leave the album
        self.versions = OwnerVersions(database)  # bumped here on every change search must see

    def ensure_indexes(self) -> None:
        """The indexes the photo and face queries need."""
        # Ascending keys only: the embedded backend supports no others, and a
        # compound index serves a descending sort just as well. Lookups by id name
        # the id first, in the filter and in its index: MongoDB minds neither order,
        # the embedded store (tinymongo) narrows by the filter's first indexed field
        # (by owner first, a search read every document of the user's album).
        self.photos.create_index([("photo_id", ASCENDING), ("owner", ASCENDING)], unique=True)
        self.photos.create_index([("owner", ASCENDING), ("uploaded_at", ASCENDING)])
        self.photos.create_index([("owner", ASCENDING), ("timeline_at", ASCENDING)])
        self.photos.create_index([("owner", ASCENDING), ("content_sha256", ASCENDING)])
        self.photos.create_index([("owner", ASCENDING), ("picture_bands", ASCENDING)])
        self.photos.create_index([("trashed_at", ASCENDING)])  # the purge of expired trash, across owners
        self.photos.create_index([("status", ASCENDING), ("uploaded_at", ASCENDING)])  # abandoned uploads, too
        self.faces.create_index([("face_id", ASCENDING), ("owner", ASCENDING)], unique=True)
        self.trashed_faces.create_index([("photo_id", ASCENDING), ("owner", ASCENDING)])
        self.faces.create_index([("photo_id", ASCENDING), ("owner", ASCENDING)])
        self.faces.create_index([("owner", ASCENDING), ("model_version", ASCENDING)])

    def ping(self) -> None:
        """Raise unless the database answers."""
        self.photos.find_one({"owner": "__ping__"}, _NO_ID)

    # Photos -----------------------------------------------------------------
    def add_photos(self, photos: Iterable[Photo]) -> None:
        """New records; each takes its place in the timeline at its upload time until indexed."""
        docs = [p.copy() for p in photos]
        for doc in docs:
            doc.setdefault("timeline_at", timeline_at(doc.get("uploaded_at")))
        if not docs:
            return
        try:
            self.photos.insert_many(docs)
        except BulkWriteError as exc:
            # Backends differ in which of the two they raise; callers see one.
            if all(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
                raise DuplicateKeyError("photo already exists", 11000) from exc
            raise

    def near_duplicates(self, owner: str, photo: Photo, max_bits: int) -> list[str]:
        """Album photos whose picture hash is at most ``max_bits`` from this photo's (itself left out),
        found through a shared band, closest first."""
        if not photo.get("picture_hash"):
            return []
        mine = int(photo["picture_hash"], 16)
        query = {"owner": owner, "picture_bands": {"$in": photo["picture_bands"]}, **_IN_ALBUM}
        close = []
        for row in self.photos.find(query, {"_id": 0, "photo_id": 1, "picture_hash": 1}):
            bits = (int(row["picture_hash"], 16) ^ mine).bit_count()
            if row["photo_id"] != photo["photo_id"] and bits <= max_bits:
                close.append((bits, row["photo_id"]))
        return [photo_id for _, photo_id in sorted(close)]

    def photo_with_content(self, owner: str, sha256: str, other_than: str | None = None) -> Photo | None:
        """The album photo of ``owner`` whose bytes have this SHA-256 (set once the indexer read them)."""
        query: dict = {"owner": owner, "content_sha256": sha256, **_IN_ALBUM}
        if other_than:
            query["photo_id"] = {"$ne": other_than}
        return self.photos.find_one(query, _NO_ID)

    def mark_duplicate(self, owner: str, photo: Photo, original_id: str) -> bool:
        """The photo's bytes are another photo's: it leaves the album (and the quota) and keeps only
        a record that says which photo it is, for the client that uploaded it."""
        fields = {
            "status": DUPLICATE,
            "duplicate_of": original_id,
            "key": None,
            "thumbnail_key": None,
            "preview_key": None,
        }
        if not self.update_photo(owner, photo["photo_id"], fields):
            return False
        self.faces.delete_many({"photo_id": photo["photo_id"], "owner": owner})
        self.usage.release(owner, 1, photo_size(photo))
        return True

    def count_photos(self, owner: str, status: str | None = None) -> int:
        """How many photo records the owner has (of one status, if given)."""
        query = {"owner": owner}
        if status:
            query["status"] = status
        return self.photos.count_documents(query)

    def get_photo(self, owner: str, photo_id: str) -> Photo | None:
        """One photo record of the owner's."""
        return self.photos.find_one({"photo_id": photo_id, "owner": owner}, _NO_ID)

    def update_photo(self, owner: str, photo_id: str, fields: dict) -> bool:
        """Set fields of a photo; False if there is no such photo."""
        result = self.photos.update_one({"photo_id": photo_id, "owner": owner}, {"$set": fields})
        return result.matched_count == 1

    def list_photos(
        self, owner: str, limit: int, after: Position | None = None, only: set[str] | None = None
    ) -> tuple[list[Photo], Position | None]:
        """The timeline, newest first, from after ``after``; with the position of the last row when
        there is more. ``only``: just these photos (a person's)."""
        query: dict = {"owner": owner, **_IN_ALBUM}
        if only is not None:
            query["photo_id"] = {"$in": sorted(only)}
        return self._page_back(query, "timeline_at", limit, after)

    def _page_back(self, query: dict, field: str, limit: int, after: Position | None):
        """Photos matching ``query`` by ``(field, photo_id)``, newest first, from after ``after``; with
        the position of the last row when there is more."""
        if after:
            at, last_id = after
            query = dict(query, **{"$or": [{field: {"$lt": at}}, {field: at, "photo_id": {"$lt": last_id}}]})
        sort = [(field, DESCENDING), ("photo_id", DESCENDING)]
        rows = list(self.photos.find(query, _NO_ID).sort(sort).limit(limit + 1))
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, (rows[-1][field], rows[-1]["photo_id"])

    def month_counts(self, owner: str) -> list[tuple[str, int]]:
        """``("YYYY-MM", photos)`` for each month of the album's timeline, newest first."""
        query = {"owner": owner, **_IN_ALBUM}
        rows = self.photos.find(query, {"_id": 0, "timeline_at": 1})
        counts = Counter(row["timeline_at"].strftime("%Y-%m") for row in rows if row.get("timeline_at"))
        return sorted(counts.items(), reverse=True)

    def backfill_timeline(self, owner: str) -> int:
        """Give photos recorded before the timeline existed their place in it (once per photo)."""
        rows = list(self.photos.find({"owner": owner, "timeline_at": {"$exists": False}}, _NO_ID))
        for row in rows:
            self.update_photo(
                owner, row["photo_id"], {"timeline_at": timeline_at(row.get("uploaded_at"), row.get("taken_at"))}
            )
        return len(rows)

    # The trash ---------------------------------------------------------------------
    # A photo in the trash keeps its record (``trashed_at`` set) and objects; its faces move to
    # ``trashed_faces``, so that search, people and grouping, which read ``faces``, leave it out
    # with no filter of their own. The flag is written before the faces move, and the indexer
    # moves what it wrote after reading the flag, so faces never stay behind (``Indexer``).
    def trash_photo(self, owner: str, photo_id: str, at: datetime) -> bool:
        """Move a photo of the album, with its faces, to the trash; False if it is not in the album."""
        query = {"owner": owner, "photo_id": photo_id, **_IN_ALBUM}
        if self.photos.update_one(query, {"$set": {"trashed_at": at}}).matched_count == 0:
            return False
        self.move_faces_to_trash(owner, photo_id)
        return True

    def move_faces_to_trash(self, owner: str, photo_id: str) -> None:
        """Idempotent: a second call (after a crash between the writes) moves them again."""
        faces = list(self.faces.find({"photo_id": photo_id, "owner": owner}, _NO_ID))
        if faces:
            self.trashed_faces.delete_many({"photo_id": photo_id, "owner": owner})
            self.trashed_faces.insert_many(faces)
            self.faces.delete_many({"photo_id": photo_id, "owner": owner})
            self.versions.bump(owner)

    def restore_photo(self, owner: str, photo_id: str, people: set[str]) -> list[Face] | None:
        """Out of the trash, with its faces; a face's person that is gone meanwhile (merged,
        deleted) is forgotten. The restored faces, or None if the photo was not in the trash."""
        query = {"photo_id": photo_id, "trashed_at": {"$ne": None}, "owner": owner}
        if self.photos.update_one(query, {"$set": {"trashed_at": None}}).matched_count == 0:
            return None
        faces = list(self.trashed_faces.find({"photo_id": photo_id, "owner": owner}, _NO_ID))
        for face in faces:
            if face.get("person_id") and face["person_id"] not in people:
                face.update(person_id=None, assigned_by=None)
            self.faces.replace_one({"face_id": face["face_id"], "owner": owner}, face, upsert=True)
        self.trashed_faces.delete_many({"photo_id": photo_id, "owner": owner})
        self.versions.bump(owner)
        return faces

    def list_trash(self, owner: str, limit: int, after: Position | None = None) -> tuple[list[Photo], Position | None]:
        """The trash, most recently trashed first, paged like ``list_photos`` by (trashed_at, photo_id)."""
        return self._page_back({"owner": owner, "trashed_at": {"$ne": None}}, "trashed_at", limit, after)

    def trashed_before(self, before: datetime, limit: int, owner: str | None = None) -> list[Photo]:
        """Photos trashed before ``before`` (one owner's, or anyone's for the scheduled purge)."""
        query: dict = {"trashed_at": {"$ne": None, "$lt": before.replace(tzinfo=None)}}
        if owner is not None:
            query["owner"] = owner
        return list(self.photos.find(query, _NO_ID).sort("trashed_at", ASCENDING).limit(limit))

    def delete_photo(self, owner: str, photo_id: str) -> Photo | None:
        """Remove the photo, then its faces; returns the removed photo, if any.

        The record goes first: an indexer that writes faces after this checks the record
        afterwards and removes what it wrote (``Indexer``), and faces it wrote before are
        removed here."""
        photo = self.get_photo(owner, photo_id)
        if photo is None:
            return None
        self.photos.delete_one({"photo_id": photo_id, "owner": owner})
        self.faces.delete_many({"photo_id": photo_id, "owner": owner})
        self.trashed_faces.delete_many({"photo_id": photo_id, "owner": owner})
        if photo["status"] != DUPLICATE:  # a duplicate's quota was released when it was found
            self.usage.release(owner, 1, photo_size(photo))
        self.versions.bump(owner)
        return photo

    def delete_owner(self, owner: str) -> dict:
        """Every photo and face of the owner's, and their quota ledger, go; the counts removed."""
        photos = self.photos.delete_many({"owner": owner}).deleted_count
        faces = self.faces.delete_many({"owner": owner}).deleted_count
        faces += self.trashed_faces.delete_many({"owner": owner}).deleted_count
        self.usage.delete_owner(owner)
        self.versions.bump(owner)
        return {"photos": photos, "faces": faces}

    def delete_orphan_faces(self, owner: str) -> int:
        """Faces whose photo record is gone (a deletion that raced an indexer)."""
        query = {"photo_id": {"$nin": sorted(self.photo_ids(owner))}, "owner": owner}
        removed = self.faces.delete_many(query).deleted_count + self.trashed_faces.delete_many(query).deleted_count
        if removed:
            self.versions.bump(owner)
        return removed

    def photos_by_id(self, owner: str, photo_ids: list[str]) -> dict[str, Photo]:
        """Some of the owner's photos, by id (absent ids left out)."""
        return {p["photo_id"]: p for p in self.photos.find({"photo_id": {"$in": photo_ids}, "owner": owner}, _NO_ID)}

    def photo_ids(self, owner: str) -> set:
        """The ids of every photo record of the owner's."""
        return {p["photo_id"] for p in self.photos.find({"owner": owner}, {"_id": 0, "photo_id": 1})}

    def expired_pending(self, owner: str | None, created_before: datetime, limit: int) -> list[Photo]:
        """Photos still ``pending`` that were asked for before ``created_before``: one owner's, or
        anyone's (the schedule)."""
        query: dict = {"status": "pending", "uploaded_at": {"$lt": created_before.replace(tzinfo=None)}}
        if owner is not None:
            query = {"owner": owner, **query}
        return list(self.photos.find(query, _NO_ID).limit(limit))

    def album_counts(self, owner: str) -> dict[str, int]:
        """The album's photos (not in the trash) by state: pending, indexed, failed."""
        return {
            status: self.photos.count_documents({"owner": owner, "status": status, "trashed_at": None})
            for status in ("pending", "indexed", "failed")
        }

    def held_usage(self, owner: str) -> tuple[int, int]:
        """What the owner's photo records count for in the quota: (photos, bytes). The ledger
        (``UsageStore``) starts from it."""
        held = list(self.photos.find({"owner": owner, "status": {"$ne": DUPLICATE}}, {"_id": 0, "declared_size": 1}))
        return len(held), sum(photo_size(p) for p in held)

    # Faces ------------------------------------------------------------------
    def replace_faces(self, owner: str, photo_id: str, faces: list[Face]) -> None:
        """Make ``faces`` the photo's faces; face ids are deterministic, so a
        repeated call leaves one copy of each."""
        keep = [f["face_id"] for f in faces]
        self.faces.delete_many({"photo_id": photo_id, "face_id": {"$nin": keep}, "owner": owner})
        for face in faces:
            doc = dict(face, owner=owner, photo_id=photo_id, embedding=vector_to_binary(face["embedding"]))
            self.faces.replace_one({"face_id": face["face_id"], "owner": owner}, doc, upsert=True)
        self.versions.bump(owner)

    def add_face(self, owner: str, photo_id: str, face: Face) -> bool:
        """One more face on an indexed photo (drawn by the user); False if the photo is gone."""
        doc = dict(face, owner=owner, photo_id=photo_id, embedding=vector_to_binary(face["embedding"]))
        self.faces.replace_one({"face_id": face["face_id"], "owner": owner}, doc, upsert=True)
        found = self.photos.update_one({"photo_id": photo_id, "owner": owner}, {"$inc": {"face_count": 1}})
        self.versions.bump(owner)
        if found.matched_count == 0:
            self.faces.delete_one({"face_id": face["face_id"], "owner": owner})
            return False
        return True

    def remove_face(self, owner: str, face: Face, remember_box: bool) -> None:
        """A wrong face box goes; a detected one's box is remembered on the photo, so that indexing
        again (a new bundle) does not bring it back."""
        self.faces.delete_one({"face_id": face["face_id"], "owner": owner})
        update: dict = {"$inc": {"face_count": -1}}
        if remember_box:
            update["$push"] = {"removed_boxes": face["box"]}
        self.photos.update_one({"photo_id": face["photo_id"], "owner": owner}, update)
        self.versions.bump(owner)

    def get_face(self, owner: str, face_id: str) -> Face | None:
        """One face of ``owner`` with its vector as a float32 array."""
        doc = self.faces.find_one({"face_id": face_id, "owner": owner}, _NO_ID)
        if doc is not None:
            doc["embedding"] = binary_to_vector(doc["embedding"])
        return doc

    def face_boxes(self, owner: str, face_ids: list[str]) -> dict[str, list]:
        """Some faces' boxes, by face id."""
        rows = self.faces.find({"face_id": {"$in": face_ids}, "owner": owner}, {"_id": 0, "face_id": 1, "box": 1})
        return {f["face_id"]: f["box"] for f in rows}

    def list_faces(self, owner: str, photo_id: str) -> list[Face]:
        """A photo's faces in their order, without vectors."""
        return list(self.faces.find({"photo_id": photo_id, "owner": owner}, _NO_VECTOR).sort("face_index", ASCENDING))

    def face_vectors(self, owner: str, model_version: str) -> tuple[list[Face], np.ndarray, np.ndarray]:
        """All of ``owner``'s faces of one model version: their ids, a float32 matrix, and their
        cohort statistics as an (n, 2) array of (mean, std) (NaN where the bundle had no cohort)."""
        ids: list[Face] = []
        vectors, stats = [], []
        projection = {"_id": 0, "face_id": 1, "photo_id": 1, "embedding": 1, "cohort_mean": 1, "cohort_std": 1}
        for doc in self.faces.find({"owner": owner, "model_version": model_version}, projection):
            ids.append(Face(face_id=doc["face_id"], photo_id=doc["photo_id"]))
            vectors.append(binary_to_vector(doc["embedding"]))
            stats.append((doc.get("cohort_mean"), doc.get("cohort_std")))
        matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        return ids, matrix, np.array(stats, dtype=np.float64).reshape(-1, 2)

    def atlas_nearest(self, owner: str, model_version: str, vector, limit: int, min_cosine: float) -> list[dict]:
        """``owner``'s faces of ``model_version`` nearest to ``vector`` by Atlas ``$vectorSearch``
        (index ``ATLAS_INDEX_NAME``), each with its cosine and cohort statistics, best first."""
        return [
            dict(row, cosine=2 * float(row.pop("score")) - 1)
            for row in self.faces.aggregate(atlas_pipeline(owner, model_version, vector, limit, min_cosine))
        ]

    # Reindexing: indexed photos, and those that failed for the face service (not their own bytes).
    def photos_to_reindex(self, target_version: str, owner: str | None = None) -> Iterator[Photo]:
        """Photos in scope not yet indexed with ``target_version``, oldest first."""
        query = dict(_reindex_scope(owner), model_version={"$ne": target_version})
        projection = {"_id": 0, "owner": 1, "photo_id": 1, "key": 1}
        yield from self.photos.find(query, projection).sort("uploaded_at", ASCENDING)

    def reindex_progress(self, target_version: str, owner: str | None = None) -> dict:
        """Of the photos in scope, how many there are and how many ``target_version`` indexed."""
        scope = _reindex_scope(owner)
        done = self.photos.count_documents(dict(scope, status="indexed", model_version=target_version))
        return {"total": self.photos.count_documents(scope), "done": done}

    def vectors_of_faces(self, owner: str, face_ids: list[str]) -> dict[str, np.ndarray]:
        """The vectors of some of ``owner``'s faces by face id (a face deleted meanwhile is absent)."""
        if not face_ids:
            return {}
        found = self.faces.find(
            {"face_id": {"$in": list(face_ids)}, "owner": owner}, {"_id": 0, "face_id": 1, "embedding": 1}
        )
        return {doc["face_id"]: binary_to_vector(doc["embedding"]) for doc in found}
