"""What every area of the service's entrypoints shares (the areas are mixins of
marketing.service.MarketingService): its settings, the audience write path, the sending
work, and this process's name for leases."""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any

from nameko.extensions import DependencyProvider
from pydantic import TypeAdapter

from crm_common import clock
from crm_common.contracts import Id

from . import settings as settings_module
from .audience.writes import AudienceWrites
from .campaigns.sending import Sending

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


class LeaseOwner(DependencyProvider):
    """Who holds a lease (a segment fill, a campaign's queueing, a batch of messages): one
    name per service container, so two replicas (or two containers in one test process)
    never take each other for themselves."""

    def setup(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def get_dependency(self, worker_ctx) -> str:
        return self.name


class Area:
    """Helpers of the service, for its areas' entrypoints."""

    owner = LeaseOwner()

    def settings(self) -> settings_module.Settings:
        return settings_module.of(self.config)

    def writes(self) -> AudienceWrites:
        return AudienceWrites(self.store.audience, self.store.segments, self.outbox, self.settings())

    def sending(self) -> Sending:
        return Sending(self.store.campaigns, self.store.audience, self.outbox, self.settings(), self.owner)
