"""The infrastructure template: valid CloudFormation, and consistent with the Chalice stages."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infrastructure" / "resources.yaml"


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(path)],
                          capture_output=True, text=True, timeout=300)


def test_template_passes_cfn_lint():
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_stage_points_at_the_templates_resources(stage):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    env = config["environment_variables"]
    text = TEMPLATE.read_text()
    assert env["PHOTO_BUCKET"] == f"memory-studio-{stage}-photos"
    assert "memory-studio-${Stage}-photos" in text
    assert env["PHOTO_EVENTS_QUEUE"] == f"memory-studio-{stage}-photo-events"
    assert env["PHOTO_EVENTS_QUEUE_URL"].endswith(f"/memory-studio-{stage}-photo-events")
    assert "memory-studio-${Stage}-photo-events" in text
    assert env["MONGODB_SECRET_ID"] == f"memory-studio/{stage}/atlas" and "memory-studio/${Stage}/atlas" in text
    policy = (ROOT / ".chalice" / config["iam_policy_file"]).read_text()
    for resource in (f"memory-studio-{stage}-photos/users/*", f"memory-studio-{stage}-photo-events",
                     f"memory-studio/{stage}/atlas", f"endpoint/{env['FACE_ENDPOINT_NAME']}"):
        assert resource in policy, resource
    # The indexer's timeout fits six times in the queue's visibility timeout.
    assert 6 * config["lambda_functions"]["index_photos"]["lambda_timeout"] <= 720
