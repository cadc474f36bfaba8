"""The README's worked example for mobile developers (examples/mobile_flow.py) against the local
stack: sign in with Cognito, upload, wait for indexing, search; every API answer checked against
the OpenAPI description."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from examples.mobile_flow import main
from local_stack.aws import StackInfo, create_confirmed_user
from tests.contract import requests_hook
from tests.face_fixtures import FACEDATA, needs_facedata
from tests.stack_fixture import ROOT, local_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, needs_facedata]
PASSWORD = "Corr3ct-Horse!"


def test_the_mobile_example_uploads_waits_and_finds(local_stack):  # noqa: F811
    create_confirmed_user(StackInfo.read(local_stack.state / "stack.json"), "mobile@example.com", PASSWORD)
    clooney = sorted((FACEDATA / "people" / "deepface" / "George_Clooney").glob("*.jpg"))
    jolie = sorted((FACEDATA / "people" / "deepface" / "Angelina_Jolie").glob("*.jpg"))
    login = ["--api", local_stack.api, "--email", "mobile@example.com", "--password", PASSWORD]

    http = requests.Session()
    http.hooks["response"].append(requests_hook(local_stack.api))
    first = main([*login, str(clooney[0])], http=http)
    assert first["status"] == "indexed" and first["faces"] >= 1
    other = main([*login, str(jolie[0])], http=http)
    assert other["status"] == "indexed"

    # The script as a developer runs it: another photo of the same man finds the first, not her.
    run = subprocess.run(
        [sys.executable, "examples/mobile_flow.py", *login, str(clooney[1]), str(clooney[2])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    matches = [m["photo_id"] for m in report["matches"]]
    assert first["photo_id"] in matches and report["photo_id"] in matches
    assert other["photo_id"] not in matches
