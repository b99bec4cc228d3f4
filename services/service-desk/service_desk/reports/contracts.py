"""What the reports RPC accepts."""
from __future__ import annotations

from pydantic import ValidationInfo, field_validator

from crm_common.contracts import OptId, Request, Timestamp, error

MAX_DAYS = 366


class GetServiceReport(Request):
    """Tickets opened in [since, until) (at most a year), optionally of one group."""

    since: Timestamp
    until: Timestamp
    group: OptId = None

    @field_validator("until")
    @classmethod
    def _range(cls, value, info: ValidationInfo):
        since = info.data.get("since")
        if since is not None and value <= since:
            raise error("range", "must be after since")
        if since is not None and (value - since).days > MAX_DAYS:
            raise error("range", f"must be at most {MAX_DAYS} days after since")
        return value
