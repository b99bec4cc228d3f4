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
from pymongo.errors import PyMongoError

from .. import audit, events, metrics, registry
from ..timeline import TIMELINE_FACT
from .entrypoints import BROKER_ERRORS, timeline_exchange

log = logging.getLogger(__name__)

# What leaves staged items for the relay instead of failing a change already stored: the
# broker (events) or the database (audit entries) unreachable.
LEFT_FOR_RELAY = (*BROKER_ERRORS, PyMongoError)


class Outbox:
    """What a worker gets: build envelopes (events, and audit entries), publish the ones
    stored with a document: events to the bus, audit entries into the service's own
    ``audit`` collection (crm_common.audit)."""

    def __init__(self, source: str, dispatch, dispatch_timeline, correlation_id: str | None,
                 record_audit=None, principal=None):
        self.source = source
        self._dispatch = dispatch
        self._dispatch_timeline = dispatch_timeline
        self._record_audit = record_audit
        self._principal = principal or (lambda: None)
        self.correlation_id = correlation_id

    def announce(self, event: events.Event, *, event_id: str | None = None) -> list[dict[str, Any]]:
        """The envelopes to stage for ``event`` (the event, and its timeline fact if any)."""
        return events.announce(event, source=self.source, correlation_id=self.correlation_id, event_id=event_id)

    @property
    def principal(self):
        """The caller of this worker (None before it is authorized, or for a public RPC)."""
        return self._principal()

    def audit(self, record_type: str, record_id: str, operation: str, before: dict[str, Any],
              after: dict[str, Any], *, contact_id: str | None = None, owner: str | None = None,
              team: str | None = None) -> list[dict[str, Any]]:
        """The audit entry to stage with a change (by this worker's caller, in this
        request), as a list to add to the staged envelopes. ``owner``/``team``: the
        record's, when it has them (its owner may read the entry)."""
        return [audit.envelope(source=self.source, record_type=record_type, record_id=record_id,
                               operation=operation, principal=self._principal(), before=before, after=after,
                               correlation_id=self.correlation_id, contact_id=contact_id, owner=owner, team=team)]

    def _publish(self, envelope: dict[str, Any]) -> None:
        if envelope["type"] == audit.AUDIT_RECORDED:
            self._record_audit(envelope)
            return
        if envelope["type"] == TIMELINE_FACT:
            self._dispatch_timeline(f"{self.source}.{envelope['data']['kind']}", envelope)
        else:
            self._dispatch(envelope["type"], envelope)
        metrics.EVENTS_PUBLISHED.labels(self.source, envelope["type"]).inc()

    def publish(self, collection: Collection, doc_id: Any, staged: list[dict[str, Any]], *,
                also: dict[str, list[str]] | None = None) -> None:
        """Call after the write that staged ``staged`` on document ``doc_id`` succeeded;
        ``also`` names other staged items of that document the caller has done
        (crm_common.events.clear_staged), cleared in the same update."""
        try:
            events.publish_staged(collection, doc_id, staged, self._publish, also=also)
        except LEFT_FOR_RELAY as exc:
            log.warning("%d event(s) of %s left in the outbox for the relay, broker or database "
                        "unreachable (%s)", len(staged), doc_id, exc)
            if also:
                events.clear_staged(collection, doc_id, also)

    def publish_many(self, collection: Collection, staged: dict[Any, list[dict[str, Any]]]) -> None:
        """Like :meth:`publish` for many documents of ``collection`` whose outboxes hold
        nothing but these events (records written with their announcements, such as
        ledger entries): everything is published, then every outbox cleared in ONE update."""
        staged = {doc_id: events for doc_id, events in staged.items() if events}
        if not staged:
            return
        try:
            for events_of_doc in staged.values():
                for envelope in events_of_doc:
                    self._publish(envelope)
        except LEFT_FOR_RELAY as exc:
            log.warning("events of %d document(s) left in the outbox for the relay, broker or database "
                        "unreachable (%s)", len(staged), exc)
            return
        events.clear_outboxes(collection, list(staged))

    def relay(self, collection: Collection, older_than: timedelta = timedelta(seconds=5)) -> int:
        relayed = 0

        def publish(envelope: dict[str, Any]) -> None:
            nonlocal relayed
            self._publish(envelope)
            relayed += 1

        try:
            events.relay_pending(collection, publish, older_than=older_than)
        except LEFT_FOR_RELAY as exc:
            log.warning("outbox relay paused, broker or database unreachable (%s)", exc)
        if relayed:
            metrics.EVENTS_RELAYED.labels(self.source).inc(relayed)
        return relayed


class EventOutbox(EventDispatcher):
    """nameko's EventDispatcher (publisher confirms, persistent messages, the call-id
    headers) wrapped in :class:`Outbox`; timeline facts go to the ``crm.timeline``
    exchange instead of the service's own."""

    def setup(self):
        self.timeline = timeline_exchange()
        # Declaring needs the broker's configure right, which only timeline publishers
        # have in a cluster (deploy/k8s, from the registry); a service the registry does
        # not know (a test's) declares it too.
        try:
            publishes_timeline = registry.load().service(self.container.service_name).timeline
        except KeyError:
            publishes_timeline = True
        if publishes_timeline:
            self.declare.append(self.timeline)
        super().setup()

    def get_dependency(self, worker_ctx):
        dispatch = super().get_dependency(worker_ctx)
        headers = self.get_message_headers(worker_ctx)

        def dispatch_timeline(routing_key: str, envelope: dict[str, Any]) -> None:
            self.publisher.publish(envelope, exchange=self.timeline, routing_key=routing_key,
                                   extra_headers=headers)

        stack = list(getattr(worker_ctx, "call_id_stack", None) or [])
        service = worker_ctx.service   # its store and caller are injected by the time anything is staged
        return Outbox(self.container.service_name, dispatch, dispatch_timeline, stack[0] if stack else None,
                      record_audit=lambda envelope: audit.record(service.store.db, envelope),
                      principal=lambda: service.caller.principal)
