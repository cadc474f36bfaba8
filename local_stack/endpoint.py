"""The face endpoint as a child process of the local stack (CPU, SageMaker contract)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests


class EndpointProcess:
    """The face endpoint as a child process, served as SageMaker would."""

    def __init__(
        self, bundle_dir: Path, host: str, port: int, env: dict, log_path: Path, workers: int = 1, threads: int = 4
    ):
        self.url = f"http://{host}:{port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpu_endpoint.serve",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--model-dir",
                    str(bundle_dir),
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                ],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until ``/ping`` answers (RuntimeError with the log's tail if it dies or times out)."""
        try:
            wait_until_answering(self.process, f"{self.url}/ping", timeout, self.log_path, "the face endpoint")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the endpoint."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_until_answering(process: subprocess.Popen, url: str, timeout: float, log_path: Path, name: str) -> None:
    """Poll ``url`` until it answers 200; RuntimeError, with the log's tail, if ``process``
    exits first or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited (log {log_path}):\n{Path(log_path).read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f}s")
