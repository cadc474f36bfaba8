"""Fixtures for suites that need real faces and the built model bundle."""

import pytest

from model_factory.facedata import facedata_root

FACEDATA = facedata_root()
needs_facedata = pytest.mark.skipif(
    FACEDATA is None, reason="../shared/facedata is absent: no real face photos to test on"
)


@pytest.fixture(scope="session")
def bundle_dir():
    """The served default: the fine-tuned dlib fused with faceres (built once, cached)."""
    if FACEDATA is None:
        pytest.skip("../shared/facedata is absent: the bundle cannot be calibrated")
    from gpu_endpoint.bundle import DEFAULT_DIR
    from training.default_bundle import build_default

    return build_default(DEFAULT_DIR, FACEDATA, log=lambda m: None)


@pytest.fixture(scope="session")
def stock_bundle_dir(bundle_dir):
    """The stock fusion (dlib's own ResNet + faceres) the default is fine-tuned from."""
    from model_factory.build_bundle import STOCK_DIR, build

    return build(STOCK_DIR, FACEDATA, log=lambda m: None)


@pytest.fixture(scope="session")
def engine(bundle_dir):
    from gpu_endpoint.engine import FaceEngine

    return FaceEngine(bundle_dir, providers=["CPUExecutionProvider"])
