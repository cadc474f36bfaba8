"""Create the store's indexes and create (or update) the Atlas Vector Search index the cloud search
uses: a deploy step, so that no Lambda cold start spends time on them.

    MONGODB_URI=... python -m chalicelib.ops.atlas_setup --dimensions 1153

(or MONGODB_SECRET_ID=... with AWS credentials instead of MONGODB_URI)

The vector index's dimension is the served bundle's (``python -m model_factory.deploy
dimensions``). An index already holding another dimension is refused, not rewritten: Atlas skips
every vector of another length, so the album's faces would drop out of search until a reindex
(docs/deploy.md: a bundle of a new dimension).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pymongo.operations import SearchIndexModel

DEFINITION = Path(__file__).with_name("atlas_vector_index.json")


class DimensionMismatch(RuntimeError):
    """The index takes vectors of another length than the bundle makes."""


def vector_index_spec(dimensions: int) -> dict:
    """The index definition (``atlas_vector_index.json``) for vectors of ``dimensions``."""
    spec = json.loads(DEFINITION.read_text())
    for field in spec["definition"]["fields"]:
        if field["type"] == "vector":
            field["numDimensions"] = dimensions
    return spec


def indexed_dimensions(faces_collection) -> int | None:
    """The dimension the vector index takes now; None when there is no such index."""
    name = vector_index_spec(1)["name"]
    for index in faces_collection.list_search_indexes():
        if index["name"] == name:
            definition = index.get("latestDefinition") or index.get("definition") or {}
            return next((f["numDimensions"] for f in definition.get("fields", []) if f.get("type") == "vector"), None)
    return None


def ensure_vector_index(faces_collection, dimensions: int) -> str:
    """Create the index, or update it in place when its dimension is the bundle's; refuse another."""
    spec = vector_index_spec(dimensions)
    current = indexed_dimensions(faces_collection)
    if current is None:
        faces_collection.create_search_index(
            SearchIndexModel(definition=spec["definition"], name=spec["name"], type=spec["type"])
        )
        return "created"
    if current != dimensions:
        raise DimensionMismatch(
            f"vector index {spec['name']} takes {current}-d vectors and the bundle makes {dimensions}-d: "
            "deploy a bundle of the same dimension, or follow docs/deploy.md (a bundle of a new dimension)"
        )
    faces_collection.update_search_index(spec["name"], spec["definition"])
    return "updated"


def main(argv: list | None = None) -> int:
    """Make the store's indexes and the vector index on Atlas (run at deploy time)."""
    import boto3

    from chalicelib.settings import Settings
    from chalicelib.stores.key_face_store import KeyFaceStore
    from chalicelib.stores.mongo_connection import AtlasUri, open_database
    from chalicelib.stores.people_store import PeopleStore
    from chalicelib.stores.photo_store import PhotoStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dimensions", type=int, required=True, help="the served bundle's embedding dimension")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if settings.store_backend != "mongodb":
        print("STORE_BACKEND must be mongodb (Atlas)", file=sys.stderr)
        return 2
    secrets = boto3.client("secretsmanager") if settings.mongodb_secret_id else None
    database = open_database(settings, AtlasUri(settings, secrets).current())
    PhotoStore(database).ensure_indexes()
    PeopleStore(database).ensure_indexes()
    KeyFaceStore(database).ensure_indexes()
    print(f"store indexes ensured on {database.name}")
    try:
        outcome = ensure_vector_index(database["faces"], args.dimensions)
    except DimensionMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"vector index {outcome} on {database.name}.faces ({args.dimensions} dimensions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
