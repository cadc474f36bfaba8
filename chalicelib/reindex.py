"""Re-embedding photos with a new model bundle.

Reindexing sends each photo whose faces are not of the target bundle version
back through the normal indexing queue, marked with the target version so the
indexer re-embeds an unchanged object once (a photo already at the target, say
queued by two runs, is skipped).  Running it again only sends what is still
behind, so it resumes where it stopped; searches filter by version and never
compare vectors of two bundles.  In scope: indexed photos, and photos that
failed because the face service was unavailable; a photo refused for its own
bytes (not an image, too large) does not depend on the model and stays out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from chalicelib.stores.photo_store import PhotoStore

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient


def reindex_message(bucket: str, key: str, target_version: str) -> str:
    """An S3-style event asking the indexer to embed one photo again with ``target_version``."""
    return json.dumps(
        {
            "reindex": target_version,
            "Records": [
                {
                    "eventName": "ObjectCreated:Reindex",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
                }
            ],
        }
    )


def enqueue(
    photo_store: PhotoStore, sqs: SQSClient, queue_url: str, bucket: str, target_version: str, owner: str | None = None
) -> int:
    """Queue every photo in scope not yet indexed with ``target_version``; how many were sent."""
    sent, batch = 0, []  # type: int, list[dict]
    for photo in photo_store.photos_to_reindex(target_version, owner):
        batch.append({"Id": str(len(batch)), "MessageBody": reindex_message(bucket, photo["key"], target_version)})
        if len(batch) == 10:
            sent += _send(sqs, queue_url, batch)
            batch = []
    if batch:
        sent += _send(sqs, queue_url, batch)
    return sent


def _send(sqs: SQSClient, queue_url: str, batch: list) -> int:
    result = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
    if result.get("Failed"):
        raise RuntimeError(f"{len(result['Failed'])} reindex messages were refused: {result['Failed'][:3]}")
    return len(batch)
