"""What every CRM nameko service has: metrics and call ids, the event outbox and its
relay, ``ping``, and replay of parked event deliveries."""
from __future__ import annotations

from nameko.rpc import rpc
from nameko.timer import timer

from .handlers import replay_parked
from .observe import Observe
from .outbox import EventOutbox

RELAY_INTERVAL_SECONDS = 5


class CrmService:
    """Base class. Subclasses set ``name``, a ``store = MongoStore(TheirStore)`` whose
    store exposes ``db``, and ``OUTBOX_COLLECTIONS``: the collections whose documents
    stage events (see crm_common.events)."""

    name: str
    OUTBOX_COLLECTIONS: tuple[str, ...] = ()

    observe = Observe()
    outbox = EventOutbox()

    @rpc
    def ping(self):
        return {"service": self.name, "ok": True}

    @rpc
    def replay_parked_events(self, limit=100):
        return {"replayed": replay_parked(self, limit)}

    @timer(interval=RELAY_INTERVAL_SECONDS)
    def relay_outbox(self):
        # Safe with several replicas: a doubly relayed event is deduplicated by consumers.
        for name in self.OUTBOX_COLLECTIONS:
            self.outbox.relay(self.store.db[name])
