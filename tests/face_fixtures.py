"""Fixtures for suites that need real faces and the built model bundle."""

import pytest

from gpu_endpoint.factory.facedata import facedata_root

FACEDATA = facedata_root()
needs_facedata = pytest.mark.skipif(
    FACEDATA is None, reason="../shared/facedata is absent: no real face photos to test on"
)


@pytest.fixture(scope="session")
def bundle_dir():
    if FACEDATA is None:
        pytest.skip("../shared/facedata is absent: the bundle cannot be calibrated")
    from gpu_endpoint.bundle import DEFAULT_DIR
    from gpu_endpoint.factory.build_bundle import build

    return build(DEFAULT_DIR, FACEDATA, log=lambda m: None)


@pytest.fixture(scope="session")
def engine(bundle_dir):
    from gpu_endpoint.engine import FaceEngine

    return FaceEngine(bundle_dir, providers=["CPUExecutionProvider"])
