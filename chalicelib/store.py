"""Photos and faces in MongoDB, through the pymongo API.

The same class runs on MongoDB Atlas (pymongo), the embedded on-disk store
(tinymongo's SQLite backend) and mongomock; only ``database.open_database``
knows which.  Every query is scoped by ``owner``.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Iterable, List, Optional, Tuple

import numpy as np
from bson.binary import Binary, BinaryVectorDtype
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .errors import BadRequest

_NO_ID = {"_id": 0}
_NO_VECTOR = {"_id": 0, "embedding": 0}


def utc(value: Optional[datetime]) -> Optional[datetime]:
    """MongoDB returns naive UTC datetimes; make them aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def now_ms() -> datetime:
    """Now, truncated to the millisecond BSON keeps, so cursors compare exactly."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def vector_to_binary(vector) -> Binary:
    return Binary.from_vector(np.asarray(vector, dtype=np.float32).tolist(), BinaryVectorDtype.FLOAT32)


def binary_to_vector(value) -> np.ndarray:
    return np.asarray(Binary(value, subtype=9).as_vector().data, dtype=np.float32)


def encode_cursor(uploaded_at: datetime, photo_id: str) -> str:
    raw = json.dumps({"t": utc(uploaded_at).isoformat(), "id": photo_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return datetime.fromisoformat(data["t"]).replace(tzinfo=None), str(data["id"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("cursor is not valid", code="invalid_cursor")


class PhotoStore:
    def __init__(self, database):
        self.db = database
        self.photos = database["photos"]
        self.faces = database["faces"]
        self.counters = database["owner_versions"]

    def ensure_indexes(self) -> None:
        # Ascending keys only: the embedded backend supports no others, and a
        # compound index serves a descending sort just as well.
        self.photos.create_index([("owner", ASCENDING), ("photo_id", ASCENDING)], unique=True)
        self.photos.create_index([("owner", ASCENDING), ("uploaded_at", ASCENDING)])
        self.faces.create_index([("owner", ASCENDING), ("face_id", ASCENDING)], unique=True)
        self.faces.create_index([("owner", ASCENDING), ("photo_id", ASCENDING)])
        self.faces.create_index([("owner", ASCENDING), ("model_version", ASCENDING)])

    def ping(self) -> None:
        self.photos.find_one({"owner": "__ping__"}, _NO_ID)

    # Photos -----------------------------------------------------------------
    def add_photos(self, photos: Iterable[dict]) -> None:
        docs = [dict(p) for p in photos]
        if not docs:
            return
        try:
            self.photos.insert_many(docs)
        except BulkWriteError as exc:
            # Backends differ in which of the two they raise; callers see one.
            if all(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
                raise DuplicateKeyError("photo already exists", 11000) from exc
            raise

    def count_photos(self, owner: str, status: Optional[str] = None) -> int:
        query = {"owner": owner}
        if status:
            query["status"] = status
        return self.photos.count_documents(query)

    def get_photo(self, owner: str, photo_id: str) -> Optional[dict]:
        return self.photos.find_one({"owner": owner, "photo_id": photo_id}, _NO_ID)

    def update_photo(self, owner: str, photo_id: str, fields: dict) -> bool:
        result = self.photos.update_one({"owner": owner, "photo_id": photo_id}, {"$set": fields})
        return result.matched_count == 1

    def list_photos(self, owner: str, limit: int, cursor: Optional[str] = None) -> Tuple[List[dict], Optional[str]]:
        """Newest first; the cursor is the (uploaded_at, photo_id) of the last row."""
        query: dict = {"owner": owner}
        if cursor:
            at, last_id = decode_cursor(cursor)
            query["$or"] = [
                {"uploaded_at": {"$lt": at}},
                {"uploaded_at": at, "photo_id": {"$lt": last_id}},
            ]
        rows = list(
            self.photos.find(query, _NO_ID)
            .sort([("uploaded_at", DESCENDING), ("photo_id", DESCENDING)])
            .limit(limit + 1)
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1]["uploaded_at"], rows[-1]["photo_id"])
        return rows, next_cursor

    def delete_photo(self, owner: str, photo_id: str) -> Optional[dict]:
        """Remove the photo and its faces; returns the removed photo, if any."""
        photo = self.get_photo(owner, photo_id)
        if photo is None:
            return None
        self.faces.delete_many({"owner": owner, "photo_id": photo_id})
        self.photos.delete_one({"owner": owner, "photo_id": photo_id})
        self.bump_owner_version(owner)
        return photo

    def delete_owner(self, owner: str) -> dict:
        faces = self.faces.delete_many({"owner": owner}).deleted_count
        photos = self.photos.delete_many({"owner": owner}).deleted_count
        self.counters.delete_one({"_id": owner})  # back to 0: an empty album, as for a new user
        return {"photos": photos, "faces": faces}

    # Per-owner change counter: search caches a user's vectors until it moves.
    def bump_owner_version(self, owner: str) -> None:
        self.counters.update_one({"_id": owner}, {"$inc": {"v": 1}}, upsert=True)

    def owner_version(self, owner: str) -> int:
        doc = self.counters.find_one({"_id": owner})
        return int(doc["v"]) if doc else 0

    # Faces ------------------------------------------------------------------
    def replace_faces(self, owner: str, photo_id: str, faces: List[dict]) -> None:
        """Make ``faces`` the photo's faces; face ids are deterministic, so a
        repeated call leaves one copy of each."""
        keep = [f["face_id"] for f in faces]
        self.faces.delete_many({"owner": owner, "photo_id": photo_id, "face_id": {"$nin": keep}})
        for face in faces:
            doc = dict(face, owner=owner, photo_id=photo_id, embedding=vector_to_binary(face["embedding"]))
            self.faces.replace_one({"owner": owner, "face_id": face["face_id"]}, doc, upsert=True)
        self.bump_owner_version(owner)

    def get_face(self, owner: str, face_id: str) -> Optional[dict]:
        """One face of ``owner`` with its vector as a float32 array."""
        doc = self.faces.find_one({"owner": owner, "face_id": face_id}, _NO_ID)
        if doc is not None:
            doc["embedding"] = binary_to_vector(doc["embedding"])
        return doc

    def list_faces(self, owner: str, photo_id: str) -> List[dict]:
        return list(self.faces.find({"owner": owner, "photo_id": photo_id}, _NO_VECTOR).sort("face_index", ASCENDING))

    def face_vectors(self, owner: str, model_version: str) -> Tuple[List[dict], np.ndarray]:
        """All of ``owner``'s faces of one model version: their ids and a float32 matrix."""
        ids, vectors = [], []
        projection = {"_id": 0, "face_id": 1, "photo_id": 1, "embedding": 1}
        for doc in self.faces.find({"owner": owner, "model_version": model_version}, projection):
            ids.append({"face_id": doc["face_id"], "photo_id": doc["photo_id"]})
            vectors.append(binary_to_vector(doc["embedding"]))
        matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        return ids, matrix
