"""One typed settings object, read once from the environment.

Every knob the Lambdas, the local stack and the tests share lives here, so the
stage configuration in ``.chalice/config.json`` is the whole story.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MB = 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting of the API and the indexer, from the environment (``from_env``)."""

    stage: str = "local"
    region: str = "us-east-1"
    # None in the cloud; the moto server's URL locally.
    aws_endpoint_url: str | None = None
    bucket: str = "memory-studio-local"
    user_pool_id: str = ""
    user_pool_client_ids: tuple[str, ...] = ()
    # Overrides the JWKS address derived from the issuer (moto serves it elsewhere).
    jwks_url: str | None = None
    # "mongodb" (Atlas / any MongoDB), "embedded" (on-disk, local default) or "memory".
    store_backend: str = "embedded"
    # "exact" (numpy scan, local default) or "atlas" ($vectorSearch; needs the index in atlas_vector_index.json).
    search_backend: str = "exact"
    mongodb_uri: str | None = None
    mongodb_secret_id: str | None = None
    mongodb_database: str = "memory_studio"
    # How stale the Atlas secret may be in a running container: a rotation is picked up within it.
    atlas_secret_max_age: int = 300
    embedded_store_path: str = ".local/store"
    max_upload_bytes: int = 25 * MB
    max_files_per_request: int = 50
    max_pending_uploads: int = 1000
    upload_url_ttl: int = 900
    download_url_ttl: int = 300
    # The face endpoint: an HTTP URL locally, a SageMaker endpoint name in the cloud.
    face_endpoint_url: str | None = None
    face_endpoint_name: str | None = None
    # Reindexes through SageMaker asynchronous inference (the same image, its own endpoint); unset:
    # they share the real-time endpoint with new uploads.
    backfill_endpoint_name: str | None = None
    events_queue_url: str | None = None
    # People regrouping jobs: their queue (unset: a job runs at once) and the debounce delay.
    people_jobs_queue_url: str | None = None
    regroup_delay: int = 60
    # A regrouping from this many faces builds its graph with a fan-out of workers on this queue
    # (chalicelib.graph_fanout), at most graph_workers at once; unset queue: in one job.
    graph_jobs_queue_url: str | None = None
    graph_fanout_faces: int = 50_000
    graph_workers: int = 32
    face_timeout: int = 30
    face_attempts: int = 4
    # Time limits the face calls must fit in: API Gateway ends a request at 29 s; the indexer
    # keeps this much of its Lambda time for the writes after the face call.
    api_time_budget: float = 25.0
    indexer_reserve: float = 15.0
    # Quotas: a pool anyone can sign up to must not become unlimited storage or GPU time.
    max_photos_per_user: int = 50_000
    max_bytes_per_user: int = 50 * 1024 * MB
    key_photos_per_hour: int = 60
    # Search keys are faces to look for, not photos to keep: a lower pixel cap than the album's.
    key_max_pixels: int = 20_000_000
    # A pending upload that never arrived expires this long after its presigned POST did.
    pending_grace: int = 600
    trash_days: int = 30  # a photo in the trash is purged this many days after it was trashed
    page_size_default: int = 30
    page_size_max: int = 100
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def issuer(self) -> str:
        """The user pool's token issuer."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def resolved_jwks_url(self) -> str:
        """Where the user pool's signing keys are: the configured URL, else the pool's own."""
        return self.jwks_url or f"{self.issuer}/.well-known/jwks.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings an environment (``os.environ`` by default) gives, defaults for the rest."""
        env = os.environ if env is None else env
        return cls(
            stage=env.get("STAGE", "local"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            bucket=env.get("PHOTO_BUCKET", "memory-studio-local"),
            user_pool_id=env.get("COGNITO_USER_POOL_ID", ""),
            user_pool_client_ids=_csv(env, "COGNITO_CLIENT_IDS"),
            jwks_url=env.get("COGNITO_JWKS_URL") or None,
            store_backend=env.get("STORE_BACKEND", "embedded"),
            search_backend=env.get("SEARCH_BACKEND", "exact"),
            mongodb_uri=env.get("MONGODB_URI") or None,
            mongodb_secret_id=env.get("MONGODB_SECRET_ID") or None,
            mongodb_database=env.get("MONGODB_DATABASE", "memory_studio"),
            atlas_secret_max_age=_int(env, "ATLAS_SECRET_MAX_AGE", 300),
            embedded_store_path=env.get("EMBEDDED_STORE_PATH", ".local/store"),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 25 * MB),
            max_files_per_request=_int(env, "MAX_FILES_PER_REQUEST", 50),
            max_pending_uploads=_int(env, "MAX_PENDING_UPLOADS", 1000),
            upload_url_ttl=_int(env, "UPLOAD_URL_TTL", 900),
            download_url_ttl=_int(env, "DOWNLOAD_URL_TTL", 300),
            face_endpoint_url=env.get("FACE_ENDPOINT_URL") or None,
            face_endpoint_name=env.get("FACE_ENDPOINT_NAME") or None,
            backfill_endpoint_name=env.get("BACKFILL_ENDPOINT_NAME") or None,
            events_queue_url=env.get("PHOTO_EVENTS_QUEUE_URL") or None,
            people_jobs_queue_url=env.get("PEOPLE_JOBS_QUEUE_URL") or None,
            regroup_delay=_int(env, "REGROUP_DELAY", 60),
            graph_jobs_queue_url=env.get("GRAPH_JOBS_QUEUE_URL") or None,
            graph_fanout_faces=_int(env, "GRAPH_FANOUT_FACES", 50_000),
            graph_workers=_int(env, "GRAPH_WORKERS", 32),
            face_timeout=_int(env, "FACE_TIMEOUT", 30),
            face_attempts=_int(env, "FACE_ATTEMPTS", 4),
            max_photos_per_user=_int(env, "MAX_PHOTOS_PER_USER", 50_000),
            max_bytes_per_user=_int(env, "MAX_BYTES_PER_USER", 50 * 1024 * MB),
            key_photos_per_hour=_int(env, "KEY_PHOTOS_PER_HOUR", 60),
            key_max_pixels=_int(env, "KEY_MAX_PIXELS", 20_000_000),
            pending_grace=_int(env, "PENDING_GRACE", 600),
            trash_days=_int(env, "TRASH_DAYS", 30),
            extra=dict(env),
        )
