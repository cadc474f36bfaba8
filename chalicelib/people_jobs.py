"""Regrouping a user's people, requested through a queue and debounced per user.

Each request (a photo indexed with faces left unassigned, or ``POST /people/recluster``) writes a
fresh token for the user and sends ``{"regroup": owner, "token"}`` with a delay. The handler runs
the job only for the message carrying the user's newest token, so a burst of uploads ends in one
regrouping, ``delay`` seconds after its last photo (trailing-edge debounce). Without a queue
(``PEOPLE_JOBS_QUEUE_URL`` unset) a request is answered by running the job at once.

Indexing asks with the faces it left unassigned; an explicit request (``POST /people/recluster``)
asks for a full regrouping, which covers them. A large album groups only those faces and their
neighbourhoods (``People.group_new_faces``): its full regrouping is an explicit, rare operation.
A large album's full job fans its graph out (``graph_fanout``) and ends there; the graph's last worker
sends ``{"regroup", "token", "graph": true}``, which agglomerates the finished graph even when a
newer request came meanwhile (that one runs after it: an album that keeps growing is still grouped).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from chalicelib.stores.people_store import PeopleStore

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

MAX_SQS_DELAY = 900


class PeopleJobs:
    """Debounced regrouping: requests queued with a delay, only the latest one per owner runs."""

    def __init__(
        self, people_store: PeopleStore, sqs: SQSClient | None, queue_url: str | None, delay: int, run, run_graph
    ):
        """``run(owner, token=…, new_faces=…)`` does the regrouping (``People.regroup``); ``run_graph(owner,
        token)`` the grouping of a finished fanned-out graph (``People.regroup_from_graph``)."""
        self.people_store = people_store
        self.sqs, self.queue_url, self.delay = sqs, queue_url, min(delay, MAX_SQS_DELAY)
        self.run, self.run_graph = run, run_graph

    def request(self, owner: str, delay: int | None = None, new_faces: list[str] | None = None) -> dict:
        """Ask for the owner's regrouping (at once without a queue); what was done or queued.
        ``new_faces``: the faces indexing left unassigned (a large album groups only them)."""
        delay = self.delay if delay is None else min(delay, MAX_SQS_DELAY)
        if not self.queue_url or self.sqs is None:
            return {"status": "done", **self.run(owner)}
        token = uuid.uuid4().hex
        self.people_store.request_regroup(owner, token, new_faces)
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
        if message.get("graph") is True:
            outcome = self.run_graph(owner, token)
            if "status" in outcome:
                return outcome["status"]  # gone (applied already) or waiting
        else:
            request = self.people_store.regroup_request(owner) or {}
            if request.get("token") != token:
                return "superseded"  # a later request's message will run the job
            new_faces = None if request.get("full") else list(request.get("new_faces") or [])
            if self.run(owner, token=token, new_faces=new_faces).get("status") == "fanned_out":
                return "fanned_out"  # the graph's last worker asks for the rest
        self.people_store.clear_regroup_request(owner, token)  # only if it is still the newest
        return "regrouped"
