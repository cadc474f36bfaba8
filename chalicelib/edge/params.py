"""Values read from requests, one way each: integers in a range (from a query string or a JSON
body) and opaque paging cursors (base64url JSON), among them positions in a timeline."""

from __future__ import annotations

from chalicelib.errors import Invalid


def int_in_range(raw, name: str, default: int, low: int, high: int, *, from_query: bool = False) -> int:
    """``raw`` as an integer in [low, high]; absent → ``default``. A query string carries text
    ("30"); a JSON body must carry a number (not "30", not true)."""
    if raw is None or (from_query and raw == ""):
        return default
    value = raw
    if from_query and isinstance(raw, str):
        try:
            value = int(raw)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{name} must be an integer between {low} and {high}")
    return value
