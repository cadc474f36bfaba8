"""Opens the document database the settings name: Atlas, embedded or in-memory; and the one write
the backends spell differently."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from chalicelib.settings import Settings

if TYPE_CHECKING:
    from types_boto3_secretsmanager import SecretsManagerClient


class AtlasUri:
    """The Atlas URI: from the environment in development, from Secrets Manager in the cloud (a plain
    URI or JSON ``{"uri": ...}``), re-read at most every ``atlas_secret_max_age`` seconds (Powertools'
    parameter cache) so that a rotated secret reaches running containers without a redeploy
    (``Services.refresh``)."""

    def __init__(self, settings: Settings, secrets_client: SecretsManagerClient | None = None):
        if not settings.mongodb_uri and not settings.mongodb_secret_id:
            raise RuntimeError("STORE_BACKEND=mongodb needs MONGODB_URI or MONGODB_SECRET_ID")
        self._settings = settings
        self._provider = None
        if not settings.mongodb_uri:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._provider = SecretsProvider(boto3_client=secrets_client)

    def current(self) -> str:
        """The Atlas URI now (the secret re-read when its cached value is old)."""
        if self._provider is None:
            return str(self._settings.mongodb_uri)
        settings = self._settings
        return uri_from_secret(
            str(self._provider.get(str(settings.mongodb_secret_id), max_age=settings.atlas_secret_max_age))
        )


def uri_from_secret(secret: str) -> str:
    """The Atlas secret holds a plain URI or JSON ``{"uri": ...}``."""
    if secret.lstrip().startswith("{"):
        return json.loads(secret)["uri"]
    return secret.strip()


def open_database(settings: Settings, uri: str | None = None):
    """The database; ``uri`` is the Atlas URI (``AtlasUri.current()``) for the mongodb backend."""
    backend = settings.store_backend
    if backend == "mongodb":
        from pymongo import MongoClient

        # One small pool per Lambda container, reused across invocations.
        if not uri:
            raise RuntimeError("the mongodb backend opens with the URI AtlasUri gives")
        client: MongoClient = MongoClient(
            uri,
            maxPoolSize=4,
            minPoolSize=0,
            maxIdleTimeMS=60_000,
            serverSelectionTimeoutMS=5_000,
            connectTimeoutMS=5_000,
            socketTimeoutMS=15_000,
            retryWrites=True,
            appname="memory-studio",
        )
        return client[settings.mongodb_database]
    if backend == "embedded":
        import tinymongo

        path = Path(settings.embedded_store_path)
        path.mkdir(parents=True, exist_ok=True)
        from chalicelib.stores.embedded import EmbeddedDatabase

        embedded = tinymongo.MongoClient(tinymongo_folder=str(path), backend="sqlite")
        return EmbeddedDatabase(embedded[settings.mongodb_database])
    if backend == "memory":
        import mongomock

        return mongomock.MongoClient()[settings.mongodb_database]
    raise ValueError(f"unknown STORE_BACKEND {backend!r} (mongodb, embedded or memory)")


def insert_if_absent(collection, doc: dict) -> None:
    """``$setOnInsert`` for every backend (the embedded one has no such operator)."""
    if collection.find_one({"_id": doc["_id"]}) is None:
        with contextlib.suppress(DuplicateKeyError):  # a concurrent request inserted it first
            collection.insert_one(doc)
