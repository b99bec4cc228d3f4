"""The sales nameko service: leads, pipelines and deals, activities, orders, forecast.

The entrypoints of each area live with the area (``team``, ``leads``, ``deals``,
``activities``, ``orders``: each a package with its contracts, rules, store, views and
entrypoints) and are composed here, with what crosses areas: the event handlers (the
contacts sales knows, the purchase summary), the timers, and the business gauges.
"""
from __future__ import annotations

import logging
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge
from pydantic import TypeAdapter

from crm_common import audit, clock, config
from crm_common.contracts import Id
from crm_common.errors import VersionConflict
from crm_common.nameko.base import CrmService
from crm_common.nameko.handlers import handles
from crm_common.nameko.mongo import MongoStore
from crm_common.nameko.remote import remote

from .activities.service import ActivityEntrypoints
from .deals import forecast
from .deals.service import DealEntrypoints
from .known_contacts import ContactReferences, contact_keys
from .leads.contracts import OPEN_STATUSES
from .leads.service import LeadEntrypoints
from .marketing_facts import MarketingFacts
from .orders.service import OrderEntrypoints
from .ownership import Ownership
from .store import OUTBOX_COLLECTIONS, PERSONAL_DATA, SalesStore
from .team.service import TeamEntrypoints

log = logging.getLogger(__name__)

PIPELINE_VALUE = Gauge("crm_sales_pipeline_value_minor", "Open deals' amount by stage, in minor units per currency",
                       ["pipeline", "stage", "currency"])
PIPELINE_WEIGHTED = Gauge("crm_sales_pipeline_weighted_minor",
                          "Open deals' amount times their stage's probability, in minor units per currency",
                          ["currency"])
OPEN_LEADS = Gauge("crm_sales_open_leads", "Open leads by status, and those waiting for an owner",
                   ["status"])
OVERDUE_ACTIVITIES = Gauge("crm_sales_overdue_activities", "Open activities past their due time")

# A timer's interval is fixed when the class is defined, so it is read here, not from nameko's config.
REMINDER_INTERVAL_SECONDS = float(config.setting("sales", "SALES_REMINDER_INTERVAL_SECONDS"))
HOUSEKEEPING_INTERVAL_SECONDS = 15
GAUGE_INTERVAL_SECONDS = 30
CONTACTS = "contacts"
_ID = TypeAdapter(Id)


def _at(value: Any, event: dict[str, Any]):
    for candidate in (value, event.get("occurred_at")):
        try:
            return clock.from_iso(candidate)
        except (TypeError, ValueError):
            continue
    return clock.now()


class SalesService(TeamEntrypoints, LeadEntrypoints, DealEntrypoints, ActivityEntrypoints, OrderEntrypoints,
                   ContactReferences, Ownership, MarketingFacts, CrmService):
    name = "sales"
    OUTBOX_COLLECTIONS = OUTBOX_COLLECTIONS
    PERSONAL_DATA = PERSONAL_DATA
    store = MongoStore(SalesStore)
    contacts_rpc = remote("contacts")

    def validation_context(self) -> dict[str, Any]:
        value = str(self.config.get("SALES_DEFAULT_COUNTRY_CODE") or "").strip().lstrip("+")
        return {"default_country_code": value if value.isdigit() else None}

    # -- the contacts sales knows ----------------------------------------------------------
    # Idempotent by construction: the read model keeps the newest contact version and an
    # erasure is a tombstone; linking and erasing leads are guarded writes that find
    # nothing left to do the second time.
    @handles(CONTACTS, "contact_created", idempotent=True)
    def on_contact_created(self, event):
        contact = event["data"]["contact"]
        _ID.validate_python(contact["id"])
        self.store.contacts.save(contact, clock.now())
        self._link_leads(contact["id"], contact_keys(contact))

    @handles(CONTACTS, "contact_updated", idempotent=True)
    def on_contact_updated(self, event):
        contact = event["data"]["contact"]
        _ID.validate_python(contact["id"])
        self.store.contacts.save(contact, clock.now())

    @handles(CONTACTS, "contact_erased", idempotent=True)
    def on_contact_erased(self, event):
        contact_id = _ID.validate_python(event["data"]["contact_id"])
        now = clock.now()
        self.store.contacts.erase(contact_id, now)
        leads = [lead["_id"] for lead in self.store.leads.of_contact(contact_id)]
        self._erase_leads_of(contact_id)
        for activity in self.store.activities.of_contact(contact_id):
            self.store.activities.activities.update_one(
                {"_id": activity["_id"]}, {"$set": {"notes": None, "outcome": None, "updated_at": now}})
        audit.anonymize(self.store.db, contact_id, records=leads)

    def _link_leads(self, contact_id: str, keys: list[str]) -> None:
        """Open leads with the new contact's email or phone are that person: facts about
        the contact reach them from now on."""
        for key in keys:
            holder = self.store.leads.holder_of(key)
            lead = self.store.leads.find(holder) if holder else None
            if lead is None or lead.get("contact_id") or lead["status"] not in OPEN_STATUSES:
                continue
            try:
                self._write_lead(lead, {"contact_id": contact_id}, "link_contact")
            except VersionConflict:
                pass   # changed meanwhile: the next capture or fact links it

    # -- behaviour from the bus: facts about a contact raise the score of their open leads ---
    # Idempotent by construction: a lead's history names the event that told each fact
    # (crm_common handled-event markers would miss two deliveries racing each other).
    @handles("service-desk", "ticket_opened", idempotent=True)
    def on_ticket_opened(self, event):
        data = event["data"]
        contact_id = _ID.validate_python(data["contact_id"])
        self._facts_about_contact(contact_id, "ticket_opened", _at(data.get("opened_at"), event),
                                  f"{data.get('category', '')} ticket {data.get('ticket_id', '')}".strip(),
                                  "service-desk", event["event_id"])

    # -- the purchase summary, from the service's own facts ---------------------------------
    # Idempotent by construction: the summary remembers what each order did to it.
    @handles("sales", "order_paid", idempotent=True)
    def on_order_paid(self, event):
        data = event["data"]
        self._apply_to_summary(data["order"], "paid", clock.from_iso(data["paid_at"]))

    @handles("sales", "order_refunded", idempotent=True)
    def on_order_refunded(self, event):
        data = event["data"]
        self._apply_to_summary(data["order"], "refunded", clock.from_iso(data["refunded_at"]))

    # -- deactivation: what a rep owned goes to others ----------------------------------------
    def _reassign_from(self, rep_id: str) -> dict[str, int]:
        rep = self.store.team.get_rep(rep_id)
        leads = self._reassign_leads_of(rep_id)
        deals = 0
        for deal in self.store.deals.open_of_owner(rep_id):
            owner, team, _ = self._next_in_team(rep["team"], exclude=rep_id, reason="owner_deactivated",
                                                take_slot=False)
            try:
                self._write_deal(deal, {"owner": owner, "team": team}, "reassign", lambda view: [])
                deals += 1
            except VersionConflict:
                continue
        activities = 0
        for activity in self.store.activities.open_of_owner(rep_id):
            owner, team = self._heir(activity, rep)
            try:
                self._write_activity(activity, {"owner": owner, "team": team}, "reassign")
                activities += 1
            except VersionConflict:
                continue
        return {"leads_reassigned": leads, "deals_reassigned": deals, "activities_reassigned": activities}

    def _heir(self, activity: dict[str, Any], rep: dict[str, Any]) -> tuple[str, str]:
        """Who takes an activity of a deactivated rep: whoever owns what it is about now,
        else the next of the rep's team."""
        regarding = activity.get("regarding") or {}
        record = None
        if regarding.get("type") == "lead":
            record = self.store.leads.find(regarding["id"])
        elif regarding.get("type") == "deal":
            record = self.store.deals.find(regarding["id"])
        if record and record.get("owner") and record["owner"] != rep["_id"]:
            return record["owner"], record.get("team") or ""
        owner, team, _ = self._next_in_team(rep["team"], exclude=rep["_id"], reason="owner_deactivated",
                                            take_slot=False)
        return owner, team

    # -- timers ----------------------------------------------------------------------------
    @timer(interval=REMINDER_INTERVAL_SECONDS)
    def remind_due_activities(self):
        sent = self._remind_due()
        if sent:
            log.info("reminded %d due activities", sent)

    @timer(interval=HOUSEKEEPING_INTERVAL_SECONDS)
    def housekeeping(self):
        """Work that follows a change elsewhere, each step safe with several replicas:
        leads scored with older rules, leads waiting for an owner with room, what
        deactivated reps still own, open-lead counts that a crash left off."""
        rescored = self._rescore_stale()
        assigned = self._assign_waiting()
        for rep_id in self.store.team.inactive_rep_ids():
            self._reassign_from(rep_id)
        for rep in self.store.team.active_reps():
            self.store.team.reconcile(rep, self.store.leads.count_open(rep["_id"]))
        if rescored or assigned:
            log.info("rescored %d leads, assigned %d waiting leads", rescored, assigned)

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        open_deals = self.store.deals.matching({"status": "open"}, {})
        pipelines = self.store.deals.all_pipelines()
        value, weighted = forecast.open_value(open_deals, pipelines)
        currency = str(self.config.get("SALES_DEFAULT_CURRENCY") or "EUR")
        for pipeline in pipelines.values():   # every stage shows, 0 in the default currency when empty
            for stage in pipeline["stages"]:
                if not any(k[:2] == (pipeline["_id"], stage["id"]) for k in value):
                    value[(pipeline["_id"], stage["id"], currency)] = 0
        weighted = weighted or {currency: 0}
        PIPELINE_VALUE.clear()   # a stage emptied since the last round shows nothing, not its old value
        for (pipeline, stage, currency), amount in value.items():
            PIPELINE_VALUE.labels(pipeline, stage, currency).set(amount)
        PIPELINE_WEIGHTED.clear()
        for currency, amount in weighted.items():
            PIPELINE_WEIGHTED.labels(currency).set(amount)
        for status in OPEN_STATUSES:
            OPEN_LEADS.labels(status).set(self.store.leads.leads.count_documents({"status": status}))
        OPEN_LEADS.labels("waiting_for_owner").set(len(self.store.leads.waiting(limit=100_000)))
        OVERDUE_ACTIVITIES.set(self.store.activities.count_overdue(clock.now()))
