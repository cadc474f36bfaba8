"""Each owner's change token: search caches a user's vectors until it changes.

A fresh random value each time, so a value once cached can never come back."""

from __future__ import annotations

import uuid


class OwnerVersions:
    """Per owner: a token that changes with every change search must see."""

    def __init__(self, database):
        self.versions = database["owner_versions"]

    def bump(self, owner: str) -> None:
        """A new token for the owner."""
        self.versions.update_one({"_id": owner}, {"$set": {"v": uuid.uuid4().hex}}, upsert=True)

    def current(self, owner: str) -> str | None:
        """The owner's token now (None before the first change)."""
        doc = self.versions.find_one({"_id": owner})
        return str(doc["v"]) if doc else None
