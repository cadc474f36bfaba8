"""A search key's analysed faces, kept a while so that paging a search does not analyse the key
photo again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING

from chalicelib.clock import now_ms, utc


class KeyFaceStore:
    """A search key's analysed faces, by owner and key."""

    def __init__(self, database):
        self.key_faces = database["key_faces"]

    def ensure_indexes(self) -> None:
        """One analysis per owner and key."""
        self.key_faces.create_index([("owner", ASCENDING), ("key_ref", ASCENDING)], unique=True)

    def save(self, owner: str, key_ref: str, analysis: dict, ttl: timedelta) -> None:
        """Keep ``analysis`` for ``key_ref`` for ``ttl``."""
        doc = {"owner": owner, "key_ref": key_ref, "expires_at": now_ms() + ttl, "analysis": json.dumps(analysis)}
        self.key_faces.replace_one({"owner": owner, "key_ref": key_ref}, doc, upsert=True)

    def get(self, owner: str, key_ref: str) -> dict | None:
        """The analysis saved for ``key_ref``, unless it expired."""
        doc = self.key_faces.find_one({"owner": owner, "key_ref": key_ref}, {"_id": 0})
        if doc is None:
            return None
        if utc(doc["expires_at"]) < datetime.now(UTC):
            self.key_faces.delete_one({"owner": owner, "key_ref": key_ref})
            return None
        return json.loads(doc["analysis"])

    def delete_owner(self, owner: str) -> None:
        """Forget every key analysis of the owner's."""
        self.key_faces.delete_many({"owner": owner})
