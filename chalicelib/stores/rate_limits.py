"""Per owner and hour: how often a rate-limited action was taken."""

from __future__ import annotations

from datetime import datetime

from chalicelib.stores.mongo_connection import insert_if_absent


class RateLimits:
    """Hourly counts of rate-limited actions, per owner."""

    def __init__(self, database):
        self.rates = database["rates"]

    def take(self, owner: str, action: str, window_start: datetime, limit: int) -> bool:
        """One more ``action`` in the window starting at ``window_start``, if under ``limit``."""
        doc_id = f"{owner}|{action}|{window_start.strftime('%Y%m%d%H')}"
        insert_if_absent(self.rates, {"_id": doc_id, "owner": owner, "n": 0})
        return self.rates.update_one({"_id": doc_id, "n": {"$lt": limit}}, {"$inc": {"n": 1}}).matched_count == 1

    def delete_owner(self, owner: str) -> None:
        """Forget the owner's counts."""
        self.rates.delete_many({"owner": owner})
