"""Stage throttling for the deployed REST API, which Chalice's configuration cannot express.

Run after ``chalice deploy --stage STAGE``: it reads the API's id from Chalice's deployment
record (``infrastructure.deployed``) unless ``--rest-api-id`` is given, and sets every
method's rate and burst limits on the stage (API Gateway then answers 429 above them) from
``infrastructure/throttling.json``. Idempotent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from infrastructure import deployed

if TYPE_CHECKING:
    from types_boto3_apigateway import APIGatewayClient
    from types_boto3_apigateway.type_defs import StageResponseTypeDef

LIMITS = Path(__file__).with_name("throttling.json")


def stage_limits(stage: str) -> dict:
    """The API's request rate and burst limits for a stage."""
    return json.loads(LIMITS.read_text())[stage]


def apply(
    apigateway: APIGatewayClient, rest_api_id: str, api_stage: str, rate_limit: float, burst_limit: int
) -> StageResponseTypeDef:
    """Every method of ``api_stage``: at most ``rate_limit`` requests a second, bursts of ``burst_limit``."""
    return apigateway.update_stage(
        restApiId=rest_api_id,
        stageName=api_stage,
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(rate_limit)},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(burst_limit)},
        ],
    )


def main(argv: list | None = None) -> int:
    """Apply the stage's throttling limits to its deployed API."""
    import boto3

    config, rest_api_id, stage = deployed.post_deploy_target(__doc__, argv)
    api_stage = stage.get("api_gateway_stage", config.get("api_gateway_stage", "api"))
    limits = stage_limits(stage["name"])
    apply(boto3.client("apigateway"), rest_api_id, api_stage, limits["rate_limit"], limits["burst_limit"])
    print(f"{rest_api_id}/{api_stage}: {limits['rate_limit']} requests/s, bursts of {limits['burst_limit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
