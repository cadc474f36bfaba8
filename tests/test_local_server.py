"""The same routes over real HTTP, through Chalice's local server, as the local stack runs them.

``chalice local`` would accept forged tokens through its Cognito authorizer
emulation; these checks prove the app's own verification closes that hole.
"""

import base64
import json
import threading
import time

import pytest
import requests

from local_stack.__main__ import serve_api
from tests.conftest import free_port, post_to_s3


@pytest.fixture
def base_url(services):
    port = free_port()
    server = serve_api("127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_full_album_flow_over_http(base_url, make_user):
    user = make_user()
    headers = {"Authorization": f"Bearer {user.id_token}"}
    assert requests.get(f"{base_url}/health", timeout=10).json()["status"] == "ok"

    response = requests.post(
        f"{base_url}/photos/uploads",
        headers=headers,
        timeout=10,
        json={"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 5}]},
    )
    assert response.status_code == 201
    upload = response.json()["uploads"][0]
    assert post_to_s3(upload, b"12345").status_code == 204

    listing = requests.get(f"{base_url}/photos", headers=headers, timeout=10).json()
    assert [p["photo_id"] for p in listing["photos"]] == [upload["photo_id"]]
    original = requests.get(listing["photos"][0]["url"], timeout=10)
    assert original.status_code == 200 and original.content == b"12345"

    photo_url = f"{base_url}/photos/{upload['photo_id']}"
    assert requests.get(photo_url, headers=headers, timeout=10).json()["faces"] == []
    assert requests.delete(photo_url, headers=headers, timeout=10).status_code == 204  # into the trash
    assert requests.get(photo_url, headers=headers, timeout=10).json()["trashed_at"]
    assert requests.get(f"{base_url}/photos", headers=headers, timeout=10).json()["photos"] == []
    purge = requests.delete(f"{base_url}/trash/{upload['photo_id']}", headers=headers, timeout=10)
    assert purge.status_code == 204
    assert requests.get(photo_url, headers=headers, timeout=10).status_code == 404


def test_forged_tokens_are_refused_over_http(base_url, make_user):
    user = make_user()
    header, payload, _ = user.id_token.split(".")
    unsigned = f"{base64.urlsafe_b64encode(json.dumps({'alg': 'none'}).encode()).decode().rstrip('=')}.{payload}."
    for token in ("garbage", unsigned, f"{header}.{payload}.AAAA"):
        response = requests.get(f"{base_url}/photos", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 401, token
        assert response.json()["error"] == "unauthorized"
    assert requests.get(f"{base_url}/photos", timeout=10).status_code == 401


def test_parallel_upload_requests_over_http_cannot_pass_the_pending_cap(base_url, make_user, settings, monkeypatch):
    """As the probe did it: parallel POST /photos/uploads to the local stack's server at 95 pending of
    100; the store's count slowed down, as a busy one is, to widen the race."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_hardening import with_settings

    served = with_settings(monkeypatch, settings, max_pending_uploads=100)
    user = make_user()
    headers = {"Authorization": f"Bearer {user.id_token}"}
    files = lambda n: {"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 5}] * n}  # noqa: E731
    for n in (50, 45):
        assert (
            requests.post(f"{base_url}/photos/uploads", headers=headers, json=files(n), timeout=30).status_code == 201
        )
    count = served.photo_store.count_photos
    monkeypatch.setattr(served.photo_store, "count_photos", lambda *a, **k: (count(*a, **k), time.sleep(0.3))[0])
    ask = lambda _: requests.post(f"{base_url}/photos/uploads", headers=headers, json=files(5), timeout=60)  # noqa: E731
    with ThreadPoolExecutor(4) as pool:
        answers = sorted(r.status_code for r in pool.map(ask, range(4)))
    assert answers == [201, 429, 429, 429]
    assert count(user.sub, status="pending") == 100
