"""Opens the document database the settings name: Atlas, embedded or in-memory."""

from __future__ import annotations

import json
from pathlib import Path

from .settings import Settings


def mongodb_uri(settings: Settings, secrets_client=None) -> str:
    """The Atlas URI: from the environment in development, from Secrets Manager
    in the cloud (a plain URI or JSON ``{"uri": ...}``)."""
    if settings.mongodb_uri:
        return settings.mongodb_uri
    if not settings.mongodb_secret_id:
        raise RuntimeError("STORE_BACKEND=mongodb needs MONGODB_URI or MONGODB_SECRET_ID")
    secret = secrets_client.get_secret_value(SecretId=settings.mongodb_secret_id)["SecretString"]
    if secret.lstrip().startswith("{"):
        return json.loads(secret)["uri"]
    return secret.strip()


def open_database(settings: Settings, secrets_client=None):
    backend = settings.store_backend
    if backend == "mongodb":
        from pymongo import MongoClient

        # One small pool per Lambda container, reused across invocations.
        client: MongoClient = MongoClient(
            mongodb_uri(settings, secrets_client),
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
        embedded = tinymongo.MongoClient(tinymongo_folder=str(path), backend="sqlite")
        return embedded[settings.mongodb_database]
    if backend == "memory":
        import mongomock

        return mongomock.MongoClient()[settings.mongodb_database]
    raise ValueError(f"unknown STORE_BACKEND {backend!r} (mongodb, embedded or memory)")
