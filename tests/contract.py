"""The API contract (chalicelib/edge/openapi.yaml) checked on every response the tests produce.

The ``api`` fixture and the local-stack session route each answer through :func:`check`, so a
response whose status, error code or body the description does not allow fails the test that
caused it. Requests to paths the API does not have still get the error shape checked.
"""

from __future__ import annotations

import json

import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_schema_validator import OAS31Validator
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from chalicelib.edge.api_docs import SPEC_PATH

SPEC = OpenAPI.from_file_path(str(SPEC_PATH))
ERRORS = OAS31Validator(yaml.safe_load(SPEC_PATH.read_text())["components"]["schemas"]["Error"])


class ContractError(AssertionError):
    pass


def check(method: str, path: str, headers: dict | None, body, status: int, response_headers: dict, data) -> None:
    """Raise :class:`ContractError` when the response is not what the description allows."""
    if isinstance(data, (dict, list)):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    if isinstance(body, str):
        body = body.encode()
    request = WerkzeugOpenAPIRequest(
        EnvironBuilder(method=method, path=path, headers=headers or {}, data=body or b"").get_request()
    )
    response = WerkzeugOpenAPIResponse(Response(data or b"", status=status, headers=response_headers))
    try:
        SPEC.validate_response(request, response)
    except (PathNotFound, OperationNotFound):
        _check_error_shape(method, path, status, data)
    except Exception as error:
        cause = error.__cause__ or error
        detail = "; ".join(_short(e) for e in getattr(cause, "schema_errors", ())) or _short(cause)
        raise ContractError(f"{method} {path} → {status} breaks the contract: {detail}\n{data!r:.400}") from None


def _short(error) -> str:
    path = "/".join(str(p) for p in getattr(error, "absolute_path", ()))
    return f"{path}: {getattr(error, 'message', str(error))}"[:300]


def _check_error_shape(method: str, path: str, status: int, data: bytes | None) -> None:
    """A route the API does not have: only an error in the documented shape is acceptable."""
    if status < 400:
        raise ContractError(f"{method} {path} answered {status} but is not in the API description")
    errors = list(ERRORS.iter_errors(json.loads(data or b"null")))
    if errors:
        raise ContractError(f"{method} {path} → {status}: not an error body: {errors[0].message}")


def checked_chalice_client(client):
    """Route every call of a ``chalice.test.Client``'s ``http`` through :func:`check`."""
    send = client.http.request

    def request(method, path, headers=None, body=b""):
        response = send(method, path, headers=headers, body=body)
        check(method, path, headers, body, response.status_code, response.headers, response.body)
        return response

    client.http.request = request
    return client


def requests_hook(api: str):
    """A ``requests`` response hook checking every answer of the API at ``api`` (not S3's, not Cognito's)."""

    def hook(response, *args, **kwargs):
        if response.url.startswith(api):
            request = response.request
            path = response.url[len(api) :] or "/"
            check(
                request.method,
                path,
                dict(request.headers),
                request.body,
                response.status_code,
                response.headers,
                response.content,
            )
        return response

    return hook
