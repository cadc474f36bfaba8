"""The static web client (chalicelib/edge/web/), served by the API itself: one deployable, same
origin as the API, so the only cross-origin calls are to Cognito and to S3."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chalice import Response

from chalicelib.errors import NotFound
from chalicelib.settings import Settings
from chalicelib.shared.media_types import BY_EXTENSION, MEDIA_TYPES

WEB_DIR = Path(__file__).resolve().parent / "web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json; charset=utf-8",  # the message catalogs (i18n-<language>.json)
    ".webmanifest": "application/manifest+json",
}
# The service worker keeps the app shell for offline use; it lives with the other files in web/ and
# controls the page one folder up.
SERVICE_WORKER = "sw.js"


def _aws_origin(settings: Settings) -> str:
    return settings.aws_endpoint_url or "https://*.amazonaws.com"


def _headers(settings: Settings, content_type: str) -> dict:
    aws = _aws_origin(settings)
    policy = (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: {aws}; "
        f"connect-src 'self' {aws}; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    )
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def asset(name: str, settings: Settings) -> Response:
    """A file of the web client with its type and caching (NotFound for any other name)."""
    path = WEB_DIR / name
    if "/" in name or path.suffix not in TYPES or not path.is_file():
        raise NotFound(f"no such file: {name}")
    headers = _headers(settings, TYPES[path.suffix])
    if name == SERVICE_WORKER:
        headers["Service-Worker-Allowed"] = "/"
    return Response(path.read_text(), status_code=200, headers=headers)


def client_config(settings: Settings, password_policy: Mapping[str, object] | None) -> Response:
    """What the browser needs to talk to Cognito and to check files before asking for uploads."""
    cognito = settings.aws_endpoint_url or f"https://cognito-idp.{settings.region}.amazonaws.com/"
    body = {
        "region": settings.region,
        "userPoolId": settings.user_pool_id,
        "clientId": settings.user_pool_client_ids[0] if settings.user_pool_client_ids else "",
        "cognitoEndpoint": cognito,
        "local": bool(settings.aws_endpoint_url),
        "maxUploadBytes": settings.max_upload_bytes,
        "maxFilesPerRequest": settings.max_files_per_request,
        "contentTypes": sorted(MEDIA_TYPES),
        "extensions": {ext.lstrip("."): name for ext, name in BY_EXTENSION.items()},
        "trashDays": settings.trash_days,
        "passwordPolicy": password_policy,
    }
    return Response(body, status_code=200, headers={"Cache-Control": "no-cache"})
