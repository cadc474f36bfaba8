"""Batches shared by concurrent requests (gpu_endpoint/batching.py), alone and in the engine."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gpu_endpoint.batching import SharedBatches


def test_concurrent_callers_share_calls_and_each_gets_its_own_rows():
    sizes = []

    def run(items):
        sizes.append(len(items))
        time.sleep(0.01)  # a graph run: callers arriving meanwhile queue for the next batch
        return items * 2

    shared = SharedBatches(run, wait_s=0.05, max_items=64)
    inputs = [np.full((n, 3), float(i)) for i, n in enumerate([1, 2, 3, 1, 4, 2, 5, 1, 3, 2, 1, 2])]
    start = threading.Barrier(len(inputs))

    def call(items):
        start.wait()
        return shared(items)

    with ThreadPoolExecutor(len(inputs)) as pool:
        outputs = list(pool.map(call, inputs))
    for items, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out, items * 2)
    assert shared.calls == len(sizes) < len(inputs)  # batches were shared
    assert sum(sizes) == sum(len(items) for items in inputs) and max(sizes) <= 64
    assert shared(np.zeros((0, 3))).shape == (0, 3)  # nothing to run: no waiting


def test_a_failed_batch_is_every_callers_error_and_the_worker_goes_on():
    def run(items):
        if (items < 0).any():
            raise ValueError("a bad chip")
        return items + 1

    shared = SharedBatches(run, wait_s=0.05, max_items=8)
    start = threading.Barrier(2)

    def call(items):
        start.wait()
        try:
            return shared(items)
        except ValueError as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(call, [np.array([-1.0]), np.array([1.0])]))
    assert all(isinstance(r, ValueError) for r in results)  # one batch: both callers get the error
    np.testing.assert_array_equal(shared(np.array([2.0])), [3.0])


def test_a_caller_larger_than_a_batch_runs_alone():
    sizes = []
    shared = SharedBatches(lambda items: sizes.append(len(items)) or items, wait_s=0.01, max_items=4)
    assert len(shared(np.zeros((10, 2)))) == 10 and sizes == [10]


@pytest.mark.factory
def test_the_engine_with_shared_batches_embeds_as_without(bundle_dir):
    """Concurrent requests' faces embedded in shared batches get the vectors each request gets alone."""
    from chalicelib.shared.images import decode_image
    from gpu_endpoint.engine import FaceEngine
    from tests.face_fixtures import FACEDATA

    alone = FaceEngine(bundle_dir, providers=["CPUExecutionProvider"])
    shared = FaceEngine(bundle_dir, providers=["CPUExecutionProvider"], batch_wait_ms=200)
    paths = [
        "people/deepface/Angelina_Jolie/img11.jpg",
        "groups/face_recognition/obama_and_biden.jpg",
        "people/deepface/Angelina_Jolie/img2.jpg",
    ]
    images = [decode_image((FACEDATA / p).read_bytes()).image for p in paths]
    faces = [alone.detect(image) for image in images]
    expected = [alone.embed(image, found) for image, found in zip(images, faces)]
    start = threading.Barrier(len(images))

    def embed(i):
        start.wait()
        return shared.embed(images[i], faces[i])

    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(embed, range(len(images))))
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-5)
    assert all(part.shared is not None and part.shared.calls < len(images) for part in shared.parts)
    assert all(part.shared is None for part in alone.parts)
