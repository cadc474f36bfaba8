"""API Gateway's own error answers (an authorizer's 401/403, throttling's 429, its 5xx) in the app's shape.

Those answers never reach the Lambda, so the app's middleware cannot add the CORS headers or the
``{"error", "message"}`` body: without this a browser cannot even read that it was signed out.
They travel inside the API's definition (``x-amazon-apigateway-gateway-responses``), which
``infrastructure.lambda_runtime`` adds to what Chalice generates: every ``chalice deploy``
replaces the whole API, and a response put beside it afterwards would be dropped by the next one
(and never went live without a new deployment of the stage).
"""

from __future__ import annotations

# API Gateway fills these in: responseType (UNAUTHORIZED, ACCESS_DENIED, THROTTLED...) and the
# message, already a quoted JSON string.
BODY = '{"error": "$context.error.responseType.toLowerCase()", "message": $context.error.messageString}'
RESPONSE_TYPES = ("DEFAULT_4XX", "DEFAULT_5XX")
EXTENSION = "x-amazon-apigateway-gateway-responses"


def definitions(allow_origin: str) -> dict:
    """Both default gateway responses: the app's body shape and the CORS headers the app sends."""
    headers = {
        "gatewayresponse.header.Access-Control-Allow-Origin": f"'{allow_origin}'",
        "gatewayresponse.header.Access-Control-Allow-Headers": "'Authorization,Content-Type'",
    }
    return {
        response_type: {"responseParameters": headers, "responseTemplates": {"application/json": BODY}}
        for response_type in RESPONSE_TYPES
    }
