"""The whole local stack (python -m local_stack up) in a subprocess on free ports, per test module."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_stack.endpoint import wait_until_answering
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningStack:
    api: str
    state: Path


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory, bundle_dir):
    state = tmp_path_factory.mktemp("stack")
    ports = [free_port() for _ in range(3)]
    log = open(state / "stack.log", "w")  # noqa: SIM115 (the stack's output until teardown closes it)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local_stack",
            "up",
            "--port",
            str(ports[0]),
            "--aws-port",
            str(ports[1]),
            "--endpoint-port",
            str(ports[2]),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{ports[0]}"
    try:
        wait_until_answering(process, f"{base}/health", 180, state / "stack.log", "the local stack")
    except RuntimeError:
        process.terminate()
        raise
    yield RunningStack(base, state)
    process.terminate()
    process.wait(timeout=30)
    log.close()
