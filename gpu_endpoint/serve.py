"""Start the endpoint server: ``python -m gpu_endpoint.serve`` (the container's ``serve``).

Concurrency: on a GPU one worker process with several threads shares one copy
of the models (ONNX Runtime sessions are thread-safe) and the GPU overlaps
their work; on CPU, workers = cores / 2 processes of 2 intra-op threads each,
so concurrent requests do not fight over the same cores.  Faces of all images
in one request are embedded in batches.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def default_workers(gpu: bool) -> int:
    """Worker processes: one on a GPU, half the cores on a CPU."""
    return 1 if gpu else max(1, (os.cpu_count() or 2) // 2)


def main(argv=None) -> int:
    """Serve the bundle with gunicorn (SageMaker's ``serve``)."""
    import onnxruntime as ort

    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", 8080)))
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "/opt/ml/model"))
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", 0)) or default_workers(gpu)
    )
    parser.add_argument("--threads", type=int, default=4 if gpu else 1, help="request threads per worker")
    args = parser.parse_args([a for a in (argv if argv is not None else sys.argv[1:]) if a != "serve"])

    os.environ["MODEL_DIR"] = args.model_dir
    os.environ.setdefault("ORT_THREADS", "0" if gpu else "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            for key, value in {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "threads": args.threads,
                "timeout": 60,
                "graceful_timeout": 10,
                "accesslog": "-",
            }.items():
                self.cfg.set(key, value)

        def load(self):
            from .server import create_app

            app = create_app()
            with app.test_request_context():
                app.view_functions["ping"]()  # load the models before taking traffic
            return app

    Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
