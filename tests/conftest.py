"""Shared fixtures: one moto server per session, a fresh store per test, real Cognito users."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from chalice.test import Client
from moto.server import ThreadedMotoServer

import app as app_module
from chalicelib.services import Services
from chalicelib.settings import Settings
from chalicelib.stores.object_storage import user_prefixes
from local_stack.aws import StackInfo, client, create_confirmed_user, free_port, provision, sign_in  # noqa: F401
from tests.contract import checked_chalice_client
from tests.face_fixtures import bundle_dir, engine, stock_bundle_dir  # noqa: F401  (shared fixtures)

ROOT = Path(__file__).resolve().parent.parent
FACEDATA = ROOT.parent / "shared" / "facedata"
PASSWORD = "Corr3ct-Horse!"


def pytest_collection_modifyitems(config, items):
    """Slow suites and the model factory's checks run when asked: by ``-m`` (``pytest -m slow``,
    ``pytest -m factory``, as ``./dev test`` does) or by naming their file (``pytest
    tests/test_web_e2e.py``); a plain ``pytest`` runs the product's own tests only."""
    if config.option.markexpr:
        return
    named = {(Path(config.invocation_params.dir) / arg.split("::")[0]).resolve() for arg in config.args}
    slow = {
        i
        for i in items
        if (i.get_closest_marker("slow") or i.get_closest_marker("factory"))
        and Path(str(i.path)).resolve() not in named
    }
    if slow:
        config.hook.pytest_deselected(items=list(slow))
        items[:] = [i for i in items if i not in slow]


@pytest.fixture(scope="session")
def aws_stack(tmp_path_factory) -> StackInfo:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store_path = tmp_path_factory.mktemp("store")
    # Short visibility timeout and receive count: redelivery and the dead-letter queue in seconds.
    info = provision(
        f"http://127.0.0.1:{port}",
        "memory-studio-test",
        "http://127.0.0.1:0",
        str(store_path),
        visibility_timeout=1,
        max_receive_count=3,
    )
    yield info
    server.stop()


@pytest.fixture
def settings(aws_stack, tmp_path, monkeypatch) -> Settings:
    env = aws_stack.app_environment()
    env["EMBEDDED_STORE_PATH"] = str(tmp_path / "store")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # boto3 credentials for helper clients too
    return Settings.from_env(env)


@pytest.fixture
def services(settings, monkeypatch) -> Services:
    svc = Services(settings)
    monkeypatch.setattr(app_module, "services", svc)
    return svc


@pytest.fixture
def api(services) -> Client:
    with Client(app_module.app) as chalice_client:
        yield checked_chalice_client(chalice_client)  # every response checked against openapi.yaml


@dataclass
class TestUser:
    email: str
    sub: str
    id_token: str
    access_token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.id_token}", "Content-Type": "application/json"}


def new_user(aws_stack: StackInfo, prefix: str = "user") -> TestUser:
    """A confirmed, signed-in Cognito user of the test pool."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    create_confirmed_user(aws_stack, email, PASSWORD)
    tokens = sign_in(aws_stack, email, PASSWORD)
    attributes = client("cognito-idp", aws_stack.aws_endpoint_url).get_user(AccessToken=tokens["AccessToken"])
    sub = next(a["Value"] for a in attributes["UserAttributes"] if a["Name"] == "sub")
    return TestUser(email, sub, tokens["IdToken"], tokens["AccessToken"])


@pytest.fixture
def make_user(aws_stack):
    return lambda prefix="user": new_user(aws_stack, prefix)


def stored_face(photo_id, index=0, box=(0, 0, 1, 1), vector=(1.0, 0.0), version="v", score=1.0) -> dict:
    """A face record as the indexer stores it, for tests that need faces without a face model."""
    return {
        "face_id": f"{photo_id}-{index:03d}",
        "face_index": index,
        "box": list(box),
        "score": score,
        "landmarks": [],
        "embedding": list(vector),
        "model_version": version,
    }


def request_uploads(api, user: TestUser, files) -> list:
    response = api.http.post("/photos/uploads", headers=user.headers, body=json.dumps({"files": files}))
    assert response.status_code == 201, response.body
    return response.json_body["uploads"]


def post_to_s3(upload: dict, data: bytes, filename: str = "photo.jpg") -> requests.Response:
    """What a browser does with a presigned POST."""
    return requests.post(upload["url"], data=upload["fields"], files={"file": (filename, data)}, timeout=30)


def object_keys(aws_stack: StackInfo, owner: str) -> list:
    """Every object of ``owner`` in the bucket, whatever its kind."""
    s3 = client("s3", aws_stack.aws_endpoint_url)
    return [
        obj["Key"]
        for prefix in user_prefixes(owner)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws_stack.bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
