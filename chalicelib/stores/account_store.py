"""What the API knows of an account apart from its photos: whether it was deleted (its tombstone)
and since when its tokens are void (signed out everywhere, disabled, password reset). Both are
read on every request, by the token verifier."""

from __future__ import annotations

from datetime import datetime

from chalicelib.clock import now_ms, utc
from chalicelib.stores.mongo_connection import insert_if_absent


class AccountStore:
    """Tombstones of deleted accounts and token revocations, read on every request."""

    def __init__(self, database):
        self.tombstones = database["tombstones"]  # subs of deleted accounts: their tokens are refused
        self.revocations = database["revocations"]  # per sub: tokens issued before this time are refused

    def add_tombstone(self, sub: str) -> None:
        """Mark the account deleted: its tokens are refused from now on."""
        insert_if_absent(self.tombstones, {"_id": sub, "deleted_at": now_ms()})

    def is_tombstoned(self, sub: str) -> bool:
        """Whether the account was deleted."""
        return self.tombstones.find_one({"_id": sub}) is not None

    def revoke_tokens(self, sub: str, before: datetime) -> None:
        """Refuse the user's tokens issued before ``before`` (a later mark replaces an earlier one)."""
        self.revocations.update_one({"_id": sub}, {"$set": {"before": before.replace(tzinfo=None)}}, upsert=True)

    def tokens_revoked_before(self, sub: str) -> datetime | None:
        """The time before which the account's tokens are refused, if any."""
        doc = self.revocations.find_one({"_id": sub})
        return utc(doc["before"]) if doc else None

    def forget_revocation(self, sub: str) -> None:
        """A deleted account's mark goes with its data (the tombstone refuses its tokens from then on)."""
        self.revocations.delete_one({"_id": sub})
