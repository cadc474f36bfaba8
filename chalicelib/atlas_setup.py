"""Create the store's indexes and create (or update) the Atlas Vector Search index the cloud search
uses: a deploy step, so that no Lambda cold start spends time on them.

MONGODB_URI=... python -m chalicelib.atlas_setup    (or MONGODB_SECRET_ID=... with AWS credentials)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pymongo.operations import SearchIndexModel

DEFINITION = Path(__file__).with_name("atlas_vector_index.json")


def ensure_vector_index(faces_collection) -> str:
    spec = json.loads(DEFINITION.read_text())
    existing = {index["name"] for index in faces_collection.list_search_indexes()}
    if spec["name"] in existing:
        faces_collection.update_search_index(spec["name"], spec["definition"])
        return "updated"
    faces_collection.create_search_index(
        SearchIndexModel(definition=spec["definition"], name=spec["name"], type=spec["type"])
    )
    return "created"


def main() -> int:
    import boto3

    from .mongo_connection import AtlasUri, open_database
    from .people_store import PeopleStore
    from .photo_store import PhotoStore
    from .settings import Settings

    settings = Settings.from_env()
    if settings.store_backend != "mongodb":
        print("STORE_BACKEND must be mongodb (Atlas)", file=sys.stderr)
        return 2
    secrets = boto3.client("secretsmanager") if settings.mongodb_secret_id else None
    database = open_database(settings, AtlasUri(settings, secrets).current())
    PhotoStore(database).ensure_indexes()
    PeopleStore(database).ensure_indexes()
    print(f"store indexes ensured on {database.name}")
    print(f"vector index {ensure_vector_index(database['faces'])} on {database.name}.faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
