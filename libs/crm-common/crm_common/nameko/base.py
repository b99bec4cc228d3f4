"""What every CRM nameko service has: the verified caller (crm_common.nameko.caller),
metrics and call ids, the event outbox and its relay, ``ping``, ``echo``, replay of parked event deliveries, and the ``rpc``
decorator that validates every call against its contract model."""
from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta
from typing import Any, Callable

from nameko.dependency_providers import Config
from nameko.timer import timer

from .. import audit, contracts, metrics, paging, privacy
from ..errors import CrmError, InvalidArgument
from . import idempotency
from .entrypoints import CrmRpc
from .caller import Caller
from .handlers import HANDLED_RETENTION_DAYS, PARKED, prune_handled, replay_parked
from .observe import Observe
from .outbox import EventOutbox

log = logging.getLogger(__name__)

RELAY_INTERVAL_SECONDS = 5
PRUNE_INTERVAL_SECONDS = 3600
MAX_ECHO_DELAY = 5.0


def rpc(request: type[contracts.Request] | Callable | None = None, **kwargs):
    """nameko's ``@rpc``, guarded by the caller's permission and with the call's
    arguments validated against its contract model.

    ``@rpc(EarnPoints)`` on ``def earn_points(self, req: EarnPoints)``: the caller's
    internal token is verified and its permission for ``<service>.earn_points`` checked
    (crm_common.access; Unauthenticated / PermissionDenied otherwise, before anything
    else), the keyword arguments of the call are validated into ``EarnPoints``
    (InvalidArgument naming every bad field otherwise) and the method gets the model; what
    it returns has personal fields masked for roles that may not see them. A
    :class:`~crm_common.contracts.Command` with an ``idempotency_key`` runs at most once per
    key (crm_common.nameko.idempotency). Bare ``@rpc`` is for methods without arguments or
    with plain ones (``ping``, ``echo``); they are guarded the same way.
    Our typed errors are declared expected: a NotFound is the caller's business, logged as
    a warning without a traceback. Replies go through
    :class:`~crm_common.nameko.entrypoints.CrmRpc`, which survives a broker outage."""
    kwargs.setdefault("expected_exceptions", CrmError)
    decorate = CrmRpc.decorator(**kwargs)
    if request is None:
        return lambda fn: decorate(_guarded(fn))
    if not isinstance(request, type):   # bare @rpc on a function
        return decorate(_guarded(request))
    return lambda fn: decorate(_validated(fn, request))


def _guarded(fn: Callable) -> Callable:
    method = fn.__name__

    @functools.wraps(fn)
    def entrypoint(self, *args: Any, **kw: Any):
        self.caller.authorize(self.name, method)
        return self.caller.mask(fn(self, *args, **kw))

    return entrypoint


def _validated(fn: Callable, model: type[contracts.Request]) -> Callable:
    method = fn.__name__
    idempotent = issubclass(model, contracts.Command)

    @functools.wraps(fn)
    def entrypoint(self, *args: Any, **kw: Any):
        self.caller.authorize(self.name, method)
        if args:
            raise InvalidArgument(f"{method} takes its arguments by name ({', '.join(model.model_fields)})")
        req = contracts.parse(model, kw, context=self.validation_context())
        if idempotent and req.idempotency_key:
            return self.caller.mask(idempotency.once(self.store.db, method, req, lambda: fn(self, req)))
        return self.caller.mask(fn(self, req))

    # nameko checks a call against ``entrypoint``'s own (*args, **kw) signature
    # (inspect.getcallargs ignores __wrapped__): the model is the signature.
    entrypoint.request_model = model
    return entrypoint


def rpc_methods(cls: type) -> dict[str, Callable]:
    """Every RPC of a service class that validates a contract model, by name, inherited
    ones included (a large service composes its entrypoints from one class per area)."""
    return {name: member for name in dir(cls)
            if hasattr(member := getattr(cls, name, None), "request_model")}


def event_handlers(cls: type) -> dict[str, Callable]:
    """Every ``@handles`` method of a service class, by name, inherited ones included."""
    return {name: member for name in dir(cls)
            if hasattr(member := getattr(cls, name, None), "handles_event")}


class CrmService:
    """Base class. Subclasses set ``name``, a ``store = MongoStore(TheirStore)`` whose
    store exposes ``db``, and ``OUTBOX_COLLECTIONS``: the collections whose documents
    stage events (see crm_common.events)."""

    name: str
    OUTBOX_COLLECTIONS: tuple[str, ...] = ()
    #: What the service holds about a contact, for a data subject's export
    #: (crm_common.privacy): label -> (collection, the field holding the contact id).
    PERSONAL_DATA: dict[str, tuple[str, str]] = {}

    config = Config()
    caller = Caller()
    observe = Observe()
    outbox = EventOutbox()

    def validation_context(self) -> dict[str, Any]:
        """What contract validators may need from the service's config (pydantic context)."""
        return {}

    @rpc
    def ping(self):
        """Readiness: answering proves the broker and the worker pool; the database
        ping proves the store (raises when it is unreachable)."""
        self.store.db.command("ping")
        return {"service": self.name, "ok": True}

    @rpc
    def echo(self, payload=None, delay=0.0):
        """A no-op round trip: touches nothing, returns ``payload``. The floor the
        benchmark measures the full gateway → broker → service hop against. ``delay``
        (seconds, at most MAX_ECHO_DELAY) holds the worker that long first: a call
        that is provably in flight, for shutdown drills."""
        if delay:
            time.sleep(min(float(delay), MAX_ECHO_DELAY))
        return payload

    @rpc(audit.ListAudit)
    def list_audit(self, req: audit.ListAudit):
        """This service's audit trail (crm_common.audit), newest first, within the caller's
        scope (the entries of records they, or their team, own)."""
        cursor = paging.decode(req.page_token, id=str)
        access = self.caller.access
        docs = audit.page(self.store.db, req, cursor and cursor["id"], access.owner_filter() if access else {})
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"entries": [audit.view(d) for d in page], "next_page_token": token}

    @rpc(privacy.ExportContact)
    def export_contact(self, req: privacy.ExportContact):
        """Everything this service holds about the contact (crm_common.privacy)."""
        return {"service": self.name, "records": privacy.export(self.store.db, req.contact_id, self.PERSONAL_DATA)}

    @rpc
    def replay_parked_events(self, limit=100):
        return {"replayed": replay_parked(self, limit)}

    def before_relay(self) -> None:
        """Finish other work a crash left staged, before its events are relayed (a
        service's own repairs: loyalty's ledger entries, contacts' term index)."""

    @timer(interval=RELAY_INTERVAL_SECONDS)
    def relay_outbox(self):
        # Safe with several replicas: a doubly relayed event is deduplicated by consumers.
        self.before_relay()
        for name in self.OUTBOX_COLLECTIONS:
            self.outbox.relay(self.store.db[name])
        # Refreshed here too, so the gauge (and its alert) survives a restart.
        metrics.EVENTS_PARKED.labels(self.name).set(self.store.db[PARKED].count_documents({}))

    @timer(interval=PRUNE_INTERVAL_SECONDS)
    def prune_handled_events(self):
        """Forget handled-event markers older than HANDLED_EVENTS_RETENTION_DAYS (30)."""
        days = float(self.config.get("HANDLED_EVENTS_RETENTION_DAYS") or HANDLED_RETENTION_DAYS)
        pruned = prune_handled(self.store.db, timedelta(days=days))
        if pruned:
            log.info("forgot %d handled-event markers older than %g days", pruned, days)
        keys = idempotency.prune(self.store.db)
        if keys:
            log.info("forgot %d idempotency keys older than %s", keys, idempotency.RETENTION)
