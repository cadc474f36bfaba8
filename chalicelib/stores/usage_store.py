"""Each owner's quota ledger: the photos and bytes their album holds, counted as uploads are
asked for and released as photos leave."""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.stores.mongo_connection import insert_if_absent


class UsageStore:
    """Per owner: the photos and bytes the quota counts."""

    def __init__(self, database):
        self.usage = database["usage"]

    def reserve(
        self, owner: str, photos: int, size: int, max_photos: int, max_bytes: int, held: Callable[[], tuple[int, int]]
    ) -> bool:
        """Count ``photos`` more photos of ``size`` bytes in all against the owner's quota, if they
        fit: one conditional update, so concurrent requests cannot both pass. An owner without a
        ledger yet (new, or with photos from before quotas) starts from ``held()``: (photos, bytes)."""
        if self.usage.find_one({"_id": owner}) is None:
            count, total = held()
            insert_if_absent(self.usage, {"_id": owner, "photos": count, "bytes": total})
        result = self.usage.update_one(
            {"_id": owner, "photos": {"$lte": max_photos - photos}, "bytes": {"$lte": max_bytes - size}},
            {"$inc": {"photos": photos, "bytes": size}},
        )
        return result.matched_count == 1

    def release(self, owner: str, photos: int, size: int) -> None:
        """Count photos and bytes off the owner's ledger."""
        self.usage.update_one({"_id": owner}, {"$inc": {"photos": -photos, "bytes": -size}})

    def of(self, owner: str) -> dict:
        """The owner's photos and bytes as the quota counts them."""
        doc = self.usage.find_one({"_id": owner}) or {}
        return {"photos": int(doc.get("photos", 0)), "bytes": int(doc.get("bytes", 0))}

    def delete_owner(self, owner: str) -> None:
        """Forget the owner's ledger."""
        self.usage.delete_one({"_id": owner})
