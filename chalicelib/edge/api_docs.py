"""The API's own description: ``/openapi.yaml`` (the contract the tests check every response
against) and ``/docs``, Swagger UI rendering it from files the API serves itself.

Swagger UI's two files come from the npm package ``swagger-ui-dist`` at build time (``./dev setup``;
they are not in git); without them ``/docs`` says how to get them.
"""

from __future__ import annotations

from pathlib import Path

from chalice import Response

from chalicelib.errors import Unavailable

SPEC_PATH = Path(__file__).resolve().parent / "openapi.yaml"
WEB_DIR = Path(__file__).resolve().parent / "web"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
# Swagger UI sets inline styles and shows data: icons; nothing else is loosened.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def spec() -> Response:
    """The OpenAPI document, as YAML."""
    return Response(
        SPEC_PATH.read_text(),
        status_code=200,
        headers={"Content-Type": "application/yaml; charset=utf-8", "Cache-Control": "no-cache"},
    )


def page() -> Response:
    """The Swagger UI page (its files fetched from npm at build time)."""
    missing = [name for name in SWAGGER_FILES if not (WEB_DIR / name).is_file()]
    if missing:
        raise Unavailable(
            f"the API docs viewer is not installed ({', '.join(missing)}): run ./dev setup before packaging; "
            "the description itself is at /openapi.yaml"
        )
    return Response(
        (WEB_DIR / "docs.html").read_text(),
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": _POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
