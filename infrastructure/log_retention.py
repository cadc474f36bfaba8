"""How long the functions' logs are kept, set after each deploy (Lambda creates a log group that
keeps everything forever). Chalice's own ``log_retention_in_days`` writes a packaged template that
names the API's function wrongly (``ApiHandler`` for ``APIHandler``), so the groups are set here,
from Chalice's deployment record.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_logs import CloudWatchLogsClient

DAYS = {"dev": 14, "prod": 90}


def apply(logs: CloudWatchLogsClient, function_names: list[str], days: int) -> list[str]:
    """Each function's log group, created if Lambda has not yet, keeps ``days``; their names."""
    groups = [f"/aws/lambda/{name}" for name in function_names]
    for group in groups:
        with suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        logs.put_retention_policy(logGroupName=group, retentionInDays=days)
    return groups
