"""The served endpoint (gunicorn, as in the container) under concurrent requests."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local_stack.aws import free_port
from local_stack.endpoint import EndpointProcess
from tests.face_fixtures import FACEDATA, needs_facedata

pytestmark = [pytest.mark.slow, needs_facedata]


@pytest.fixture(scope="module")
def served(bundle_dir, tmp_path_factory):
    server = EndpointProcess(
        bundle_dir, "127.0.0.1", free_port(), {}, tmp_path_factory.mktemp("ep") / "log", workers=2, threads=2
    )
    server.wait_ready()
    yield server.url
    server.stop()


def test_concurrent_requests_all_answered_identically(served):
    photos = [
        FACEDATA / "groups/dlib/2008_002470.jpg",
        FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg",
        FACEDATA / "groups/face_recognition/obama_and_biden.jpg",
    ]
    bodies = [p.read_bytes() for p in photos]

    def call(i):
        response = requests.post(
            f"{served}/invocations", data=bodies[i % 3], headers={"Content-Type": "image/jpeg"}, timeout=120
        )
        return i % 3, response.status_code, response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(24)))
    assert all(status == 200 for _, status, _ in answers)
    by_photo = {}
    for index, _, body in answers:
        boxes = [f["box"] for f in body["results"][0]["faces"]]
        by_photo.setdefault(index, []).append(boxes)
    for index, runs in by_photo.items():
        assert all(run == runs[0] for run in runs), index
        assert len(runs[0]) >= 1
    # A bad request in the middle of the load leaves the workers serving.
    assert (
        requests.post(
            f"{served}/invocations", data=b"junk", headers={"Content-Type": "image/png"}, timeout=30
        ).status_code
        == 400
    )
    assert requests.get(f"{served}/ping", timeout=10).status_code == 200
