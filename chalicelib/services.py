"""The app's collaborators, built lazily once per Lambda container.

Tests and the local stack swap the environment (settings), never the code.
"""

from __future__ import annotations

from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.accounts import Accounts
from chalicelib.album import Album
from chalicelib.edge.auth import TokenVerifier
from chalicelib.face_client import FaceClient, HttpTransport, SageMakerTransport, Transport
from chalicelib.face_search import FaceSearch
from chalicelib.graph_fanout import GraphFanout
from chalicelib.observability import logger
from chalicelib.people import People
from chalicelib.people_jobs import PeopleJobs
from chalicelib.settings import Settings
from chalicelib.stores.account_store import AccountStore
from chalicelib.stores.key_face_store import KeyFaceStore
from chalicelib.stores.lease_store import LeaseStore
from chalicelib.stores.mongo_connection import AtlasUri, open_database
from chalicelib.stores.object_storage import ObjectStorage
from chalicelib.stores.people_store import PeopleStore
from chalicelib.stores.photo_store import PhotoStore
from chalicelib.stores.vector_index import AtlasIndex, ExactIndex, VectorIndex

if TYPE_CHECKING:
    from types_boto3_cognito_idp import CognitoIdentityProviderClient
    from types_boto3_cognito_idp.type_defs import PasswordPolicyTypeTypeDef
    from types_boto3_s3 import S3Client

    from chalicelib.indexing import Indexer


class Services:
    """The wiring: every client, store and domain object, built once per container on first use."""

    def __init__(self, settings: Settings | None = None):
        self._settings = settings
        self._store_uri: str | None = None  # the Atlas URI the store opened with

    @cached_property
    def settings(self) -> Settings:
        """The settings given, or those of the environment."""
        return self._settings or Settings.from_env()

    def client(self, name: str, attempts: int = 4, **config) -> Any:
        """A boto3 client; ``attempts`` counts every try, the first included (botocore's
        ``max_attempts`` would count retries only: attempts=1 meant two tries). Typed where it is
        held: the properties below, and the parameters of the classes it is given to."""
        s = self.settings
        return boto3.client(  # type: ignore[call-overload]  # any service name: typed by the caller
            name,
            region_name=s.region,
            endpoint_url=s.aws_endpoint_url,
            config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, **config),
        )

    @cached_property
    def s3(self) -> S3Client:
        """The S3 client (SigV4, path-style addressing against moto's server)."""
        # SigV4 and virtual-host-free addressing: presigned URLs then work
        # against moto's server as well as against AWS.
        return self.client(
            "s3", signature_version="s3v4", s3={"addressing_style": "path"} if self.settings.aws_endpoint_url else {}
        )

    @cached_property
    def cognito(self) -> CognitoIdentityProviderClient:
        """The Cognito user pool client."""
        return self.client("cognito-idp")

    @cached_property
    def password_policy(self) -> PasswordPolicyTypeTypeDef | None:
        """The user pool's password rules, read from the pool itself (it owns them), once per container.
        None when the pool cannot be read: sign-up still works, Cognito then says what is missing."""
        if not self.settings.user_pool_id:
            return None
        try:
            pool = self.cognito.describe_user_pool(UserPoolId=self.settings.user_pool_id)["UserPool"]
        except Exception:  # noqa: BLE001 (a page of the web client must not fail on it)
            logger.warning("the user pool's password rules could not be read")
            return None
        return pool.get("Policies", {}).get("PasswordPolicy")

    @cached_property
    def atlas_uri(self) -> AtlasUri:
        """Where the Atlas URI comes from (the environment or Secrets Manager)."""
        secrets = self.client("secretsmanager") if self.settings.mongodb_secret_id else None
        return AtlasUri(self.settings, secrets)

    @property
    def _on_atlas(self) -> bool:
        return self.settings.store_backend == "mongodb"

    @cached_property
    def photo_store(self) -> PhotoStore:
        """The photo store on the configured backend (local backends make their indexes)."""
        if self._on_atlas:
            # Atlas's indexes are made at deploy time (python -m chalicelib.ops.atlas_setup), not per cold start.
            self._store_uri = self.atlas_uri.current()
            return PhotoStore(open_database(self.settings, self._store_uri))
        photo_store = PhotoStore(open_database(self.settings))
        photo_store.ensure_indexes()
        return photo_store

    @cached_property
    def people_store(self) -> PeopleStore:
        """The people store, on the photo store's database."""
        people = PeopleStore(self.photo_store.db)
        if not self._on_atlas:
            people.ensure_indexes()
        return people

    def refresh(self) -> bool:
        """Start over, as a fresh container would, when the Atlas secret was rotated since the store
        opened (checked at most every ``atlas_secret_max_age`` seconds; called as each invocation begins)."""
        opened = self.__dict__.get("photo_store")
        if opened is None or not self._on_atlas:
            return False
        try:
            if self.atlas_uri.current() == self._store_uri:
                return False
        except Exception:  # Secrets Manager unreachable: the open connection still works
            logger.warning("could not re-read the Atlas secret", exc_info=True)
            return False
        for name in [n for n in self.__dict__ if n not in ("_settings", "settings", "atlas_uri", "_store_uri")]:
            del self.__dict__[name]
        opened.db.client.close()
        return True

    @cached_property
    def people(self) -> People:
        """The album's people."""
        return People(
            self.photo_store,
            self.people_store,
            self.album,
            lambda: self.face_client,
            self.vector_index,
            self.graph_fanout,
        )

    @cached_property
    def people_jobs(self) -> PeopleJobs:
        """Regrouping requests: queued when a queue is configured, else run at once."""
        s = self.settings
        sqs = self.client("sqs") if s.people_jobs_queue_url else None
        return PeopleJobs(
            self.people_store,
            sqs,
            s.people_jobs_queue_url,
            s.regroup_delay,
            self.people.regroup,
            self.people.regroup_from_graph,
        )

    @cached_property
    def graph_fanout(self) -> GraphFanout:
        """Large albums' graphs, built by a fan-out of workers (needs no store: workers never open it)."""
        s = self.settings
        sqs = self.client("sqs") if s.graph_jobs_queue_url else None
        return GraphFanout(
            self.object_storage,
            sqs,
            s.graph_jobs_queue_url,
            s.people_jobs_queue_url,
            s.graph_fanout_faces,
            s.graph_workers,
        )

    @cached_property
    def object_storage(self) -> ObjectStorage:
        """The photo bucket."""
        return ObjectStorage(self.s3, self.settings.bucket)

    @cached_property
    def verifier(self) -> TokenVerifier:
        """The token verifier, which also refuses deleted accounts and revoked tokens."""
        s = self.settings
        return TokenVerifier(
            s.issuer,
            s.user_pool_client_ids,
            s.resolved_jwks_url,
            is_deleted=lambda sub: self.account_store.is_tombstoned(sub),
            revoked_before=lambda sub: self.account_store.tokens_revoked_before(sub),
        )

    @cached_property
    def accounts(self) -> Accounts:
        """Account deletion, sign-out everywhere and disabling."""
        return Accounts(self.account_store, self.album, self.cognito, self.settings.user_pool_id)

    @cached_property
    def account_store(self) -> AccountStore:
        """Tombstones and token revocations."""
        return AccountStore(self.photo_store.db)

    @cached_property
    def lease_store(self) -> LeaseStore:
        """Short leases across containers."""
        return LeaseStore(self.photo_store.db)

    @cached_property
    def key_face_store(self) -> KeyFaceStore:
        """Key photos' analyses, kept for a search's later pages."""
        key_faces = KeyFaceStore(self.photo_store.db)
        if not self._on_atlas:
            key_faces.ensure_indexes()
        return key_faces

    @cached_property
    def album(self) -> Album:
        """The album."""
        return Album(
            self.photo_store,
            self.object_storage,
            self.settings,
            self.people_store,
            self.lease_store,
            self.key_face_store,
        )

    @cached_property
    def face_client(self) -> FaceClient:
        """The face endpoint's client: over HTTP locally, through SageMaker in the cloud."""
        s = self.settings
        transport: Transport
        if s.face_endpoint_url:
            transport = HttpTransport(s.face_endpoint_url)
        elif s.face_endpoint_name:
            transport = SageMakerTransport(self._sagemaker_runtime, s.face_endpoint_name)
        else:
            raise RuntimeError("set FACE_ENDPOINT_URL (local) or FACE_ENDPOINT_NAME (SageMaker)")
        return FaceClient(transport, attempts=s.face_attempts, timeout=s.face_timeout)

    @cache  # noqa: B019 (one Services per container: its clients are meant to live as long)
    def _sagemaker_runtime(self, read_timeout: int):
        # FaceClient does the retrying, with jitter and a bound; botocore tries once.
        return self.client(
            "sagemaker-runtime", attempts=1, read_timeout=read_timeout, connect_timeout=min(5, read_timeout)
        )

    @cached_property
    def indexer(self) -> Indexer:
        """The indexer (imported on first use: the API's cold start does without the imaging library)."""
        from chalicelib.indexing import Indexer  # the imaging library with it: the API's cold start does without

        backfill = None
        if self.settings.backfill_endpoint_name:
            from chalicelib.backfill import Backfill

            backfill = Backfill(
                self.client("sagemaker-runtime"), self.settings.backfill_endpoint_name, self.object_storage
            )
        return Indexer(
            self.photo_store,
            self.object_storage,
            self.face_client,
            self.settings,
            self.people,
            self.people_jobs,
            backfill,
        )

    @cached_property
    def vector_index(self) -> VectorIndex:
        """Exact search in the container, or Atlas ``$vectorSearch``, as the settings say."""
        return AtlasIndex(self.photo_store) if self.settings.search_backend == "atlas" else ExactIndex(self.photo_store)

    @cached_property
    def face_search(self) -> FaceSearch:
        """Find."""
        return FaceSearch(self.album, self.face_client, self.vector_index, self.people)
