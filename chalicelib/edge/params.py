"""Values read from requests, one way each: integers in a range (from a query string or a JSON
body) and opaque paging cursors (base64url JSON), among them positions in a timeline."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

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


def encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_cursor(cursor) -> dict:
    """The cursor's data; a cursor this API did not write is a 400 ``invalid_cursor``."""
    try:
        text = str(cursor)
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if isinstance(data, dict):
            return data
    except (binascii.Error, ValueError, TypeError):
        pass
    raise Invalid("cursor is not valid", code="invalid_cursor")


def encode_position(position: tuple[datetime, str] | None) -> str | None:
    """A cursor for the row after ``(time, photo_id)`` in a timeline (None: the last page)."""
    if position is None:
        return None
    at, photo_id = position
    return encode_cursor({"t": at.isoformat(), "id": photo_id})


def decode_position(cursor) -> tuple[datetime, str] | None:
    """The ``(time, photo_id)`` an ``encode_position`` cursor holds; no cursor → None."""
    if not cursor:
        return None
    data = decode_cursor(cursor)
    try:
        return datetime.fromisoformat(data["t"]).replace(tzinfo=None), str(data["id"])
    except (ValueError, KeyError, TypeError):
        raise Invalid("cursor is not valid", code="invalid_cursor") from None
