"""API errors: each carries its HTTP status and a stable machine-readable code.

They derive from ``ChaliceUnhandledError`` so that Chalice lets them reach the
error middleware in ``app.py``, which renders ``{"error", "message"}``.
"""

from chalice import ChaliceUnhandledError


class ApiError(ChaliceUnhandledError):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        # Seconds a client should wait before trying again (sent as Retry-After).
        self.retry_after = retry_after

    @property
    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}

    def to_body(self) -> dict:
        return {"error": self.code, "message": self.message}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


def code_for_status(status: int) -> str:
    """The error code our API uses for a status Chalice produced itself."""
    for cls in ApiError.__subclasses__():
        if cls.status == status:
            return cls.code
    return "internal_error" if status >= 500 else "error"
