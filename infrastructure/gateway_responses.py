"""API Gateway's own error answers (an authorizer's 401/403, throttling's 429, its 5xx) in the app's shape.

Those answers never reach the Lambda, so the app's middleware cannot add the CORS headers or the
``{"error", "message"}`` body: without this a browser cannot even read that it was signed out.
Run after ``chalice deploy --stage STAGE`` (like ``infrastructure.throttling``); idempotent.
"""

from __future__ import annotations

from infrastructure import deployed, preflight

# API Gateway fills these in: responseType (UNAUTHORIZED, ACCESS_DENIED, THROTTLED...) and the
# message, already a quoted JSON string.
BODY = '{"error": "$context.error.responseType.toLowerCase()", "message": $context.error.messageString}'
RESPONSE_TYPES = ("DEFAULT_4XX", "DEFAULT_5XX")


def apply(apigateway, rest_api_id: str, allow_origin: str) -> list:
    """Both default gateway responses: the app's body shape and the CORS headers the app sends."""
    headers = {
        "gatewayresponse.header.Access-Control-Allow-Origin": f"'{allow_origin}'",
        "gatewayresponse.header.Access-Control-Allow-Headers": "'Authorization,Content-Type'",
    }
    return [
        apigateway.put_gateway_response(
            restApiId=rest_api_id,
            responseType=response_type,
            responseParameters=headers,
            responseTemplates={"application/json": BODY},
        )
        for response_type in RESPONSE_TYPES
    ]


def main(argv: list | None = None) -> int:
    import boto3

    _, rest_api_id, stage = deployed.post_deploy_target(__doc__, argv)
    name, ok, detail = preflight.cors_origin(stage["name"], stage["environment_variables"])
    if not ok:
        raise SystemExit(f"{name}: {detail}")
    origin = stage["environment_variables"]["CORS_ALLOW_ORIGIN"]
    apply(boto3.client("apigateway"), rest_api_id, origin)
    print(f"{rest_api_id}: gateway errors answer in the app's shape with CORS for {origin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
