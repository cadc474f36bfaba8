"""Regrouping a user's people, requested through a queue and debounced per user.

Each request (a photo indexed with faces left unassigned, or ``POST /people/recluster``) writes a
fresh token for the user and sends ``{"regroup": owner, "token"}`` with a delay. The handler runs
the job only for the message carrying the user's newest token, so a burst of uploads ends in one
regrouping, ``delay`` seconds after its last photo (trailing-edge debounce). Without a queue
(``PEOPLE_JOBS_QUEUE_URL`` unset) a request is answered by running the job at once.
"""

from __future__ import annotations

import json
import uuid

from .store import now_ms

MAX_SQS_DELAY = 900


class PeopleJobs:
    def __init__(self, database, sqs, queue_url: str | None, delay: int, run):
        """``run(owner)`` does the regrouping (``People.regroup``)."""
        self.requests = database["people_jobs"]
        self.sqs, self.queue_url, self.delay, self.run = sqs, queue_url, min(delay, MAX_SQS_DELAY), run

    def request(self, owner: str, delay: int | None = None) -> dict:
        delay = self.delay if delay is None else min(delay, MAX_SQS_DELAY)
        if not self.queue_url:
            return {"status": "done", **self.run(owner)}
        token = uuid.uuid4().hex
        self.requests.update_one(
            {"_id": owner}, {"$set": {"owner": owner, "token": token, "requested_at": now_ms()}}, upsert=True
        )
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps({"regroup": owner, "token": token}),
            DelaySeconds=delay,
        )
        return {"status": "queued", "delay_seconds": delay}

    def handle(self, message: dict) -> str:
        """One queue message; returns what happened."""
        owner, token = message.get("regroup"), message.get("token")
        if not isinstance(owner, str) or not isinstance(token, str):
            return "ignored"
        current = self.requests.find_one({"_id": owner})
        if current is None or current.get("token") != token:
            return "superseded"  # a later request's message will run the job
        self.run(owner)
        # Only this request's record: one made while the job ran keeps its own message.
        self.requests.delete_one({"_id": owner, "token": token})
        return "regrouped"
