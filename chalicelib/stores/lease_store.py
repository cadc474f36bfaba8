"""Short leases: one holder at a time for a name, across Lambda containers (a conditional insert in
the store), so that a count checked under a lease holds until the write it allowed is made."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from chalicelib.clock import now_ms


class LeaseStore:
    """Named leases, one holder at a time."""

    def __init__(self, database):
        self.leases = database["leases"]

    def take(self, name: str, seconds: float) -> str | None:
        """A lease on ``name`` for ``seconds`` (its token), or None while another holder's has not
        expired. A lease its holder never released (a process that died) lapses by itself."""
        token, now = uuid.uuid4().hex, now_ms()
        until = (now + timedelta(seconds=seconds)).replace(tzinfo=None)
        try:
            self.leases.insert_one({"_id": name, "token": token, "until": until})
            return token
        except DuplicateKeyError:
            pass
        taken = self.leases.update_one(
            {"_id": name, "until": {"$lt": now.replace(tzinfo=None)}}, {"$set": {"token": token, "until": until}}
        )
        return token if taken.matched_count == 1 else None

    def release(self, name: str, token: str) -> None:
        """Give the lease back, if ``token`` still holds it."""
        self.leases.delete_one({"_id": name, "token": token})
