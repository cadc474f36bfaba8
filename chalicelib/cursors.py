"""The API's opaque paging cursors (base64url JSON), one format: the domain writes them into its
answers (``next_cursor``), the edge reads them back from query strings and bodies."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from chalicelib.errors import Invalid


def encode_cursor(data: dict) -> str:
    """An opaque paging cursor for ``data`` (URL-safe base64 JSON)."""
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


def search_cursor(offset: int) -> str:
    """Where the next page of search results starts."""
    return encode_cursor({"o": offset})


def search_offset(cursor) -> int:
    """The offset a ``search_cursor`` holds; no cursor → 0."""
    if not cursor:
        return 0
    offset = decode_cursor(cursor).get("o")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise Invalid("cursor is not valid", code="invalid_cursor")
    return offset
