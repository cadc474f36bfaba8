"""Time: as the records keep it (aware UTC in the code, naive UTC in BSON, to the millisecond), and
the deadline a caller must have its answer by."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import overload


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """MongoDB returns naive UTC datetimes; make them aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def now_ms() -> datetime:
    """Now, truncated to the millisecond BSON keeps, so cursors compare exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Deadline:
    """When the caller must have its answer (monotonic clock)."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    @classmethod
    def for_lambda(cls, context, cap: float | None = None, reserve: float = 0.0) -> Deadline:
        """The Lambda's remaining time less ``reserve`` (kept for the caller's own work), at most ``cap``."""
        remaining = math.inf
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining = context.get_remaining_time_in_millis() / 1000 - reserve
        return cls(min(remaining, cap if cap is not None else math.inf))

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.at - time.monotonic()
