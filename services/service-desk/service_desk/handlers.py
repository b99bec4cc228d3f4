"""The read model's event handlers (service_desk.customers): who the customers are, their
loyalty tier and their value, from contacts, loyalty and sales. A tier or segment that
moves re-chooses the SLA policy of the customer's active tickets, the elapsed time kept.
Mixed into ServiceDeskService (service.py).

Each handler is idempotent by construction (a fact is kept only if newer than the one
stored; re-targeting a ticket to the policy it has changes nothing), so no handled-event
markers. Their queues are durable: a service desk that was down catches up, and the
tickets get the policy the latest facts call for.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from crm_common import audit, clock
from crm_common.contracts import Id
from crm_common.nameko.handlers import handles

from .tickets import domain
from .tickets.store import TICKETS

log = logging.getLogger(__name__)
_ID = TypeAdapter(Id)


def _contact_id(value: Any) -> str:
    """An id from another service's event, checked as strictly as an RPC argument."""
    return _ID.validate_python(value)


def _at(*candidates: Any) -> datetime:
    for value in candidates:
        try:
            return clock.from_iso(value)
        except (TypeError, ValueError):
            continue
    return clock.now()


class ReadModelHandlers:
    # -- contacts -----------------------------------------------------------------------
    @handles("contacts", "contact_created", idempotent=True)
    def on_contact_created(self, event):
        contact = event["data"]["contact"]
        _contact_id(contact["id"])
        self.store.customers.save_contact(contact)

    @handles("contacts", "contact_updated", idempotent=True)
    def on_contact_updated(self, event):
        contact = event["data"]["contact"]
        _contact_id(contact["id"])
        self.store.customers.save_contact(contact)

    @handles("contacts", "contact_erased", idempotent=True)
    def on_contact_erased(self, event):
        contact_id = _contact_id(event["data"]["contact_id"])
        self.store.customers.erase(contact_id)
        self._anonymize_tickets(contact_id)
        self.store.bot.anonymize(contact_id, domain.ERASED, clock.now())
        # audit entries still staged in an outbox are written first, so none lands after
        # the anonymization with personal values
        self.outbox.relay(self.store.db[TICKETS], older_than=timedelta(0))
        audit.anonymize(self.store.db, contact_id)

    # -- loyalty --------------------------------------------------------------------------
    @handles("loyalty", "member_enrolled", idempotent=True)
    def on_member_enrolled(self, event):
        self._tier(event, "tier", "enrolled_at")

    @handles("loyalty", "tier_changed", idempotent=True)
    def on_tier_changed(self, event):
        self._tier(event, "to_tier", "changed_at")

    def _tier(self, event, tier_field: str, at_field: str) -> None:
        data = event["data"]
        contact_id = _contact_id(data["contact_id"])
        if self.store.customers.save_tier(contact_id, str(data.get(tier_field) or ""),
                                          _at(data.get(at_field), event.get("occurred_at"))):
            self._retarget_customer(contact_id)

    # -- sales ------------------------------------------------------------------------------
    @handles("sales", "purchase_summary_changed", idempotent=True)
    def on_purchase_summary_changed(self, event):
        data = event["data"]
        contact_id = _contact_id(data["contact_id"])
        summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
        at = _at(summary.get("updated_at"), event.get("occurred_at"))
        if self.store.customers.save_value(contact_id, summary, at, self.settings().value_bands):
            self._retarget_customer(contact_id)

    # -- re-choosing the policy ----------------------------------------------------------------
    def _retarget_customer(self, contact_id: str) -> int:
        customer = self.store.customers.get(contact_id)
        writes = self._writes()
        moved = 0
        for ticket_id in self.store.tickets.active_of(contact_id):
            def rule(ticket, ctx):
                if ticket["status"] not in domain.ACTIVE:
                    return domain.Change()
                priority = domain.sla_of(ticket).priority
                policy = self._policy_for(customer, priority)
                return domain.retarget(ticket, policy, customer, priority, ctx, writes.settings.warning_percent,
                                       writes.calendar((policy or {}).get("calendar_id")))
            writes.apply(ticket_id, rule, "sla")
            moved += writes.wrote
        if moved:
            log.info("re-chose the SLA of %d active tickets of %s (tier %s, segment %s)", moved, contact_id,
                     customer.tier or "-", customer.segment)
        return moved
