"""The edge's half of the errors: each domain kind's HTTP status, and the JSON body every failure
leaves as (``{"error", "message"}``)."""

from __future__ import annotations

from chalicelib import errors

STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.NotAuthenticated: 401,
    errors.NotAllowed: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.UnsupportedType: 415,
    errors.CannotProcess: 422,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}


def status_of(error: errors.DomainError) -> int:
    """The HTTP status of a domain error (500 for a kind without one)."""
    return next((status for kind, status in STATUS.items() if isinstance(error, kind)), 500)


def body_of(error: errors.DomainError) -> dict:
    """A domain error's JSON body: ``{"error": code, "message": words}``."""
    return {"error": error.code, "message": error.message}


def headers_of(error: errors.DomainError) -> dict:
    """A domain error's headers: ``Retry-After`` when it says when to try again."""
    return {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}


def code_for_status(status: int) -> str:
    """The error code our API uses for a status Chalice produced itself."""
    kind = next((kind for kind, known in STATUS.items() if known == status), None)
    if kind is not None:
        return kind.code
    return "internal_error" if status >= 500 else "error"
