"""The face engine: model bundle, detection, alignment, embedding, and the SageMaker-contract server."""

import chalicelib  # noqa: F401  (first: it keeps OpenBLAS single-threaded, see chalicelib/__init__.py)
