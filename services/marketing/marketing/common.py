"""What every area of the service's entrypoints shares (the areas are mixins of
marketing.service.MarketingService): its settings, the audience write path, the sending
work, and this process's name for leases."""
from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from crm_common import clock
from crm_common.contracts import Id

from . import settings as settings_module
from .audience.writes import AudienceWrites
from .campaigns.sending import Sending

OWNER = f"{socket.gethostname()}:{os.getpid()}"   # who holds a lease (a process; replicas differ)
_ID = TypeAdapter(Id)


def contact_id(value: Any) -> str:
    """An id from another service's event, checked as strictly as an RPC argument (it
    becomes a field name in the audience pages)."""
    return _ID.validate_python(value)


def event_time(value: Any, envelope: dict[str, Any]) -> datetime:
    """A time from an event's payload, else when the event occurred."""
    for candidate in (value, envelope.get("occurred_at")):
        if isinstance(candidate, str):
            try:
                return clock.from_iso(candidate)
            except ValueError:
                continue
    return clock.now()


class Area:
    """Helpers of the service, for its areas' entrypoints."""

    def settings(self) -> settings_module.Settings:
        return settings_module.of(self.config)

    def writes(self) -> AudienceWrites:
        return AudienceWrites(self.store.audience, self.store.segments, self.outbox, self.settings())

    def sending(self) -> Sending:
        return Sending(self.store.campaigns, self.store.audience, self.outbox, self.settings(), OWNER)
