"""What the product refuses, in its own words: each error's class is its kind, and it carries a
stable machine-readable code and a message for the user. No HTTP here: the edge
(``chalicelib/edge/http_errors.py``) gives each kind its status and renders it.

They derive from ``ChaliceUnhandledError`` only so that Chalice lets them pass a route untouched
and reach the error middleware in ``app.py``.
"""

from chalice import ChaliceUnhandledError


class DomainError(ChaliceUnhandledError):
    """What went wrong in the domain: a kind (the class), a code and words for the user; no HTTP."""

    code = "internal_error"

    def __init__(self, message: str, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.retry_after = retry_after  # seconds after which trying again can succeed


class Invalid(DomainError):
    """The request itself is wrong (a field, a cursor, a box)."""

    code = "bad_request"


class NotAuthenticated(DomainError):
    """No valid token, or one the account no longer accepts."""

    code = "unauthorized"


class NotAllowed(DomainError):
    """A valid caller asking for what is not theirs to do."""

    code = "forbidden"


class NotFound(DomainError):
    """No such thing for this user: another user's things are not found either."""

    code = "not_found"


class Conflict(DomainError):
    """Not in the state the request needs (not indexed yet, in the trash, already there)."""

    code = "conflict"


class TooLarge(DomainError):
    """A request or file over its size limit."""

    code = "payload_too_large"


class UnsupportedType(DomainError):
    """A file whose type the album does not take."""

    code = "unsupported_media_type"


class CannotProcess(DomainError):
    """Well-formed, but nothing can be done with it (a key photo without a face)."""

    code = "unprocessable"


class RateLimited(DomainError):
    """Over a quota or a rate; ``retry_after`` says when to try again, if ever."""

    code = "too_many_requests"


class Unavailable(DomainError):
    """A service this needs does not answer now; trying again later can succeed."""

    code = "service_unavailable"
