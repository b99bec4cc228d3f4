"""Publishing events after the state they describe is stored (see crm_common.events).

With the broker unreachable the event stays pending in its document and the relay
timer publishes it once the broker is back: the stored change is not undone, so the
call that made it succeeds rather than failing after the fact."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from nameko.events import EventDispatcher
from pymongo.collection import Collection

from .. import events, metrics
from .entrypoints import BROKER_ERRORS

log = logging.getLogger(__name__)


class Outbox:
    """What a worker gets: build envelopes, publish the ones stored with a document."""

    def __init__(self, source: str, dispatch, correlation_id: str | None):
        self.source = source
        self._dispatch = dispatch
        self.correlation_id = correlation_id

    def event(self, type: str, subject: str, data: dict[str, Any], *,
              event_id: str | None = None) -> dict[str, Any]:
        return events.envelope(type, source=self.source, subject=subject, data=data,
                               correlation_id=self.correlation_id, event_id=event_id)

    def _publish(self, envelope: dict[str, Any]) -> None:
        self._dispatch(envelope["type"], envelope)
        metrics.EVENTS_PUBLISHED.labels(self.source, envelope["type"]).inc()

    def publish(self, collection: Collection, doc_id: Any, staged: list[dict[str, Any]]) -> None:
        """Call after the write that staged ``staged`` on document ``doc_id`` succeeded."""
        try:
            events.publish_staged(collection, doc_id, staged, self._publish)
        except BROKER_ERRORS as exc:
            log.warning("%d event(s) of %s left in the outbox for the relay, broker unreachable (%s)",
                        len(staged), doc_id, exc)

    def relay(self, collection: Collection, older_than: timedelta = timedelta(seconds=5)) -> int:
        relayed = 0

        def publish(envelope: dict[str, Any]) -> None:
            nonlocal relayed
            self._publish(envelope)
            relayed += 1

        try:
            events.relay_pending(collection, publish, older_than=older_than)
        except BROKER_ERRORS as exc:
            log.warning("outbox relay paused, broker unreachable (%s)", exc)
        if relayed:
            metrics.EVENTS_RELAYED.labels(self.source).inc(relayed)
        return relayed


class EventOutbox(EventDispatcher):
    """nameko's EventDispatcher (publisher confirms, persistent messages, the call-id
    headers) wrapped in :class:`Outbox`."""

    def get_dependency(self, worker_ctx):
        dispatch = super().get_dependency(worker_ctx)
        stack = list(getattr(worker_ctx, "call_id_stack", None) or [])
        return Outbox(self.container.service_name, dispatch, stack[0] if stack else None)
