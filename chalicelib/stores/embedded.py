"""The embedded store (tinymongo on SQLite) with its writes planned from the indexes.

tinymongo plans a read from the collection's indexes whatever the filter, but a write only from an
exact ``_id`` or a single-field equality: ``update_one({"face_id": f, "owner": o}, …)`` reads and
decodes every document of the collection (1.1 s an answer at 20,000 faces, against milliseconds
for the read). Here a write with a richer filter first reads the ``_id`` of the documents its filter
matches (planned from the indexes), then writes each by its ``_id``. One lock per database keeps the
read and the write together against the process's other writes, so a conditional write (a face the
user has not decided) still holds its condition when it lands. The lock is the process's: between
processes sharing one store folder a conditional write is no longer atomic (the local stack runs its
API and its event pumps in one process; several processes may still write plain records together).
Only the local stack and the tests use this store; MongoDB plans its writes itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_WRITES = ("insert_one", "insert_many", "delete_many", "bulk_write", "find_one_and_update", "create_index")


@dataclass
class WriteResult:
    """What pymongo's result objects say that the stores read."""

    matched_count: int = 0
    modified_count: int = 0
    deleted_count: int = 0
    upserted_id: Any = None
    acknowledged: bool = True


class EmbeddedDatabase:
    """The embedded (tinymongo) database, whose collections plan their writes from their indexes."""

    def __init__(self, database):
        self._database = database
        self._lock = threading.RLock()
        self._collections: dict[str, EmbeddedCollection] = {}

    def __getitem__(self, name: str) -> EmbeddedCollection:
        if name not in self._collections:
            self._collections[name] = EmbeddedCollection(self._database[name], self._lock)
        return self._collections[name]

    def __getattr__(self, name: str):
        return getattr(self._database, name)


class EmbeddedCollection:
    """A tinymongo collection whose filtered writes find their documents by an indexed read first."""

    def __init__(self, collection, lock: threading.RLock):
        self._collection = collection
        self._lock = lock

    def __getattr__(self, name: str):
        attribute = getattr(self._collection, name)
        if name not in _WRITES:
            return attribute

        def locked(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return locked

    def _ids(self, query: dict, first_only: bool) -> list:
        if set(query) == {"_id"}:
            found = self._collection.find_one(query, {"_id": 1})
            return [found["_id"]] if found else []
        cursor = self._collection.find(query, {"_id": 1})
        if first_only:
            cursor = cursor.limit(1)
        return [doc["_id"] for doc in cursor]

    def update_one(self, query: dict, update: dict, upsert: bool = False, **kwargs) -> Any:
        """pymongo's ``update_one``, atomic within this process."""
        with self._lock:
            ids = self._ids(query, first_only=True)
            if not ids:
                return self._collection.update_one(query, update, upsert=upsert, **kwargs) if upsert else WriteResult()
            result = self._collection.update_one({"_id": ids[0]}, update, **kwargs)
            return WriteResult(matched_count=1, modified_count=result.modified_count)

    def update_many(self, query: dict, update: dict, **kwargs) -> WriteResult:
        """pymongo's ``update_many``, atomic within this process."""
        with self._lock:
            ids = self._ids(query, first_only=False)
            modified = sum(self._collection.update_one({"_id": i}, update, **kwargs).modified_count for i in ids)
            return WriteResult(matched_count=len(ids), modified_count=modified)

    def replace_one(self, query: dict, replacement: dict, upsert: bool = False, **kwargs) -> Any:
        """pymongo's ``replace_one``, atomic within this process."""
        with self._lock:
            ids = self._ids(query, first_only=True)
            if ids:
                result = self._collection.replace_one({"_id": ids[0]}, replacement, **kwargs)
                return WriteResult(matched_count=1, modified_count=result.modified_count)
            if not upsert:
                return WriteResult()
            return WriteResult(upserted_id=self._collection.insert_one(dict(replacement)).inserted_id)

    def delete_one(self, query: dict, **kwargs) -> WriteResult:
        """pymongo's ``delete_one``, atomic within this process."""
        with self._lock:
            ids = self._ids(query, first_only=True)
            if not ids:
                return WriteResult()
            return WriteResult(deleted_count=self._collection.delete_one({"_id": ids[0]}, **kwargs).deleted_count)
