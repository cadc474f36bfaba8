"""What ``chalice deploy --stage STAGE`` created, read from its record (``.chalice/deployed/STAGE.json``).

    python -m infrastructure.deployed --stage prod --origin   → https://<id>.execute-api.<region>.amazonaws.com
    python -m infrastructure.deployed --stage prod --function cognito_post_confirmation   → its ARN

The web client is served by the API, so the API's origin is the one the photo bucket's CORS rule
must allow (the stack's ``WebOrigin``): the deploy runs the stack with a placeholder first, then
Chalice, then the stack again with this origin — a straight line, no value needed before it exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import urlsplit

CHALICE_DIR = Path(__file__).resolve().parent.parent / ".chalice"


def read_config(chalice_dir: Path = CHALICE_DIR) -> dict:
    """``.chalice/config.json``: every stage's settings."""
    return json.loads((chalice_dir / "config.json").read_text())


def _resources(stage: str, chalice_dir: Path) -> tuple[Path, list[dict]]:
    record_path = chalice_dir / "deployed" / f"{stage}.json"
    if not record_path.exists():
        raise SystemExit(f"no {record_path}: run chalice deploy --stage {stage} first")
    return record_path, json.loads(record_path.read_text())["resources"]


def rest_api(stage: str, chalice_dir: Path = CHALICE_DIR) -> dict:
    """The stage's deployed REST API, as Chalice recorded it."""
    record_path, resources = _resources(stage, chalice_dir)
    for resource in resources:
        if resource.get("resource_type") == "rest_api":
            return resource
    raise SystemExit(f"no REST API in {record_path}: run chalice deploy --stage {stage} first")


def function_arn(stage: str, name: str, chalice_dir: Path = CHALICE_DIR) -> str:
    """The ARN of the app's Lambda function ``name`` (as app.py names it)."""
    record_path, resources = _resources(stage, chalice_dir)
    for resource in resources:
        if resource.get("resource_type") == "lambda_function" and resource.get("name") == name:
            return resource["lambda_arn"]
    raise SystemExit(f"no function {name} in {record_path}: run chalice deploy --stage {stage} first")


def function_names(stage: str, chalice_dir: Path = CHALICE_DIR) -> list[str]:
    """Every Lambda function Chalice deployed for the stage, by its name in AWS."""
    _, resources = _resources(stage, chalice_dir)
    return [r["lambda_arn"].rsplit(":", 1)[-1] for r in resources if r.get("resource_type") == "lambda_function"]


def rest_api_id(stage: str, chalice_dir: Path = CHALICE_DIR) -> str:
    """The stage's REST API id."""
    return rest_api(stage, chalice_dir)["rest_api_id"]


def api_origin(stage: str, chalice_dir: Path = CHALICE_DIR) -> str:
    """``scheme://host`` of the deployed API's URL: the web client's origin."""
    url = urlsplit(rest_api(stage, chalice_dir)["rest_api_url"])
    return f"{url.scheme}://{url.netloc}"


def post_deploy_target(description: str, argv: list | None) -> tuple[dict, str, dict]:
    """The command line of a step run after ``chalice deploy`` (``--stage``, ``--rest-api-id``):
    (the whole Chalice config, the REST API's id, the stage's config)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="the Chalice stage (dev, prod)")
    parser.add_argument("--rest-api-id", help="default: from .chalice/deployed/STAGE.json")
    args = parser.parse_args(argv)
    config = read_config()
    stage = dict(config["stages"][args.stage], name=args.stage)
    return config, args.rest_api_id or rest_api_id(args.stage), stage


def main(argv: list | None = None) -> int:
    """Print what Chalice deployed for a stage."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--origin", action="store_true", help="print the API's origin (else its id)")
    parser.add_argument("--function", help="print the ARN of this function of app.py")
    args = parser.parse_args(argv)
    if args.function:
        print(function_arn(args.stage, args.function))
    else:
        print(api_origin(args.stage) if args.origin else rest_api_id(args.stage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
