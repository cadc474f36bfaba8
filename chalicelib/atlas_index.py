"""Create (or update) the Atlas Vector Search index the cloud search uses.

MONGODB_URI=... python -m chalicelib.atlas_index    (or MONGODB_SECRET_ID=... with AWS credentials)
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

    from .database import open_database
    from .settings import Settings

    settings = Settings.from_env()
    if settings.store_backend != "mongodb":
        print("STORE_BACKEND must be mongodb (Atlas)", file=sys.stderr)
        return 2
    database = open_database(settings, boto3.client("secretsmanager") if settings.mongodb_secret_id else None)
    print(f"vector index {ensure_vector_index(database['faces'])} on {database.name}.faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
