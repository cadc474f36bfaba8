"""Re-embedding photos with a new model bundle.

Reindexing sends each photo whose faces are not of the target bundle version
back through the normal indexing queue, marked ``reindex`` so the indexer
re-embeds even an unchanged object.  Running it again only sends what is still
behind, so it resumes where it stopped; searches filter by version and never
compare vectors of two bundles.
"""
from __future__ import annotations

import json
from typing import Iterator, Optional

from .store import PhotoStore


def reindex_message(bucket: str, key: str) -> str:
    return json.dumps({"reindex": True, "Records": [{
        "eventName": "ObjectCreated:Reindex",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }]})


def stale_photos(store: PhotoStore, target_version: str, owner: Optional[str] = None) -> Iterator[dict]:
    """Photos not yet indexed with ``target_version`` (failed ones too), oldest first."""
    query = {"status": {"$in": ["indexed", "failed"]}, "model_version": {"$ne": target_version}}
    if owner:
        query["owner"] = owner
    projection = {"_id": 0, "owner": 1, "photo_id": 1, "key": 1}
    yield from store.photos.find(query, projection).sort("uploaded_at", 1)


def progress(store: PhotoStore, target_version: str, owner: Optional[str] = None) -> dict:
    scope = {"owner": owner} if owner else {}
    total = store.photos.count_documents(dict(scope, status={"$in": ["indexed", "failed"]}))
    done = store.photos.count_documents(dict(scope, status="indexed", model_version=target_version))
    return {"total": total, "done": done}


def enqueue(store: PhotoStore, sqs, queue_url: str, bucket: str, target_version: str,
            owner: Optional[str] = None) -> int:
    sent, batch = 0, []
    for photo in stale_photos(store, target_version, owner):
        batch.append({"Id": str(len(batch)), "MessageBody": reindex_message(bucket, photo["key"])})
        if len(batch) == 10:
            sent += _send(sqs, queue_url, batch)
            batch = []
    if batch:
        sent += _send(sqs, queue_url, batch)
    return sent


def _send(sqs, queue_url: str, batch: list) -> int:
    result = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
    if result.get("Failed"):
        raise RuntimeError(f"{len(result['Failed'])} reindex messages were refused: {result['Failed'][:3]}")
    return len(batch)
