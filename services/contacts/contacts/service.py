"""The contacts nameko service: RPC entrypoints (contracts.py is what each accepts), the
timeline handler and the business gauge. Rules live in ``domain``, persistence and the
dedup claim protocol in ``store``; this module orders the writes and publishes.

Write order (no transactions): claims first, then the single contact write that also
stages its events, then releases, then publish. A crash anywhere leaves either stale
claims (taken over later, see store) or a pending event (re-published by the relay).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import audit, clock, contracts
from crm_common.contracts import Id, Timestamp
from crm_common.errors import InvalidArgument, NotFound, PermissionDenied, VersionConflict
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles, handles_timeline
from crm_common.nameko.mongo import MongoStore
from crm_common import paging
from crm_common.retry import on_conflict
from crm_common.timeline import TimelineFact

from . import contracts as C
from . import domain, search
from .events import ConsentChanged, ContactCreated, ContactErased, ContactUpdated
from .store import COMPANIES, CONTACTS, TERMS_STAGED, TIMELINE, ContactsStore
from .views import company_view, contact_view, entry_view

log = logging.getLogger(__name__)

# What a contact's audit entries show the before and after of.
AUDITED_FIELDS = (*domain.WRITABLE_FIELDS, "consents", "erased")
CONTACTS_TOTAL = Gauge("crm_contacts", "Contacts (not erased) by lifecycle stage", ["lifecycle_stage"])
GAUGE_INTERVAL_SECONDS = 30


class _Unsubscribed(contracts.Tolerant):
    contact_id: Id
    at: Timestamp


class ContactsService(CrmService):
    name = "contacts"
    OUTBOX_COLLECTIONS = (CONTACTS, COMPANIES)
    PERSONAL_DATA = {"contact": (CONTACTS, "_id"), "timeline": (TIMELINE, "contact_id")}

    store = MongoStore(ContactsStore)

    # ------------------------------------------------------------------ helpers

    def validation_context(self):
        value = str(self.config.get("CONTACTS_DEFAULT_COUNTRY_CODE") or "").strip().lstrip("+")
        return {"default_country_code": value if value.isdigit() else None}

    def _publish(self, contact_id: str, staged: list, *, terms_of: int | None = None) -> None:
        """Publish what a write staged; ``terms_of``: that write (of this version) also
        staged a change of the term index, done by now."""
        also = {TERMS_STAGED: [str(terms_of)]} if terms_of else None
        self.outbox.publish(self.store.contacts, contact_id, staged, also=also)

    def _scope(self) -> dict[str, str]:
        """What the caller's scope adds to a query (crm_common.access): contacts they own,
        their team's, or every one."""
        access = self.caller.access
        return access.owner_filter() if access else {}

    def _check_owner(self, owner: str | None) -> None:
        """A caller whose scope is their own contacts may not hand one to someone else."""
        access = self.caller.access
        if access and access.scope == "own" and owner != access.principal.id:
            raise PermissionDenied(f"you may only own contacts yourself: owner must be '{access.principal.id}' "
                                   f"(your scope for {access.permission} is own)", {"owner": str(owner)})

    def _team_of(self, owner: str | None) -> str | None:
        """A contact's team: the team of the caller who owns it (there is no user
        directory: the team of an owner someone else assigns is not known)."""
        access = self.caller.access
        if access and access.principal.team and owner == access.principal.id:
            return access.principal.team
        return None

    def _audit(self, doc: dict, operation: str, before: dict, after: dict, *, values: bool = True) -> list:
        """The audit entry to stage with a change of the contact ``doc`` (as stored after
        it; crm_common.audit): the changed fields of its view before and after; an erasure
        names them, no values. Its owner (and their team) may read it."""
        old, new = audit.changed(before, after, AUDITED_FIELDS)
        if not values:
            old, new = ({k: audit.ERASED for k in d} for d in (old, new))
        return self.outbox.audit("contact", doc["_id"], operation, old, new, contact_id=doc["_id"],
                                 owner=doc.get("owner"), team=doc.get("team"))

    def _check_company(self, company_id) -> None:
        if company_id and not self.store.company_exists(company_id):
            raise InvalidArgument.field("contact.company_id", f"no company {company_id}")

    # ------------------------------------------------------------------ contacts

    @rpc(C.CreateContact)
    def create_contact(self, req: C.CreateContact):
        now = clock.now()
        fields = domain.new_contact(req.contact, now)
        access = self.caller.access
        if access and access.scope != "all" and not fields.get("owner"):
            fields["owner"] = access.principal.id    # a rep's new contact is theirs
        self._check_owner(fields.get("owner"))
        self._check_company(fields["company_id"])
        contact_id = new_id("con")
        extra = domain.search_fields(fields)
        doc = {"_id": contact_id, **fields, "team": self._team_of(fields.get("owner")), "erased": False, **extra,
               "consent_history": domain.consent_history_on_create(fields["consents"], now),
               "created_at": now, "updated_at": now, "version": 1}
        view = contact_view(doc)
        staged = self.outbox.announce(ContactCreated(contact=view)) + self._audit(doc, "create", {}, view)
        self.store.claim_keys(extra["dedup_keys"], contact_id, now)
        try:
            inserted = self.store.insert_contact(doc, staged)
        except Exception:
            self.store.release_keys(extra["dedup_keys"], contact_id)
            raise
        if not inserted:  # the same create, replayed under its idempotency key
            return contact_view(self.store.get_doc(contact_id))
        self.store.sync_terms(contact_id, (), extra["search_terms"])
        self._publish(contact_id, staged, terms_of=1)
        return view

    @rpc(C.GetContact)
    def get_contact(self, req: C.GetContact):
        return contact_view(self.store.get_doc(req.contact_id, self._scope()))

    @rpc(C.UpdateContact)
    def update_contact(self, req: C.UpdateContact):
        changes = contracts.parse(C.ContactIn, {p: req.contact.get(p) for p in req.update_mask},
                                  context=self.validation_context(), prefix="contact")
        doc = self.store.get_live_doc(req.contact_id, self._scope())
        if doc["version"] != req.expected_version:
            raise self.store.version_conflict(req.contact_id, req.expected_version)
        new = domain.changed_fields(doc, changes, list(dict.fromkeys(req.update_mask)))
        if not new:
            return contact_view(doc)
        if "owner" in new:
            self._check_owner(new["owner"])
            new["team"] = self._team_of(new["owner"])
        return self._apply(doc, new, clock.now())

    def _apply(self, doc, new, now):
        """Claim added keys, write version-guarded with contact_updated, release removed keys."""
        contact_id = doc["_id"]
        merged = {**doc, **new}
        old_keys = doc.get("dedup_keys") or []
        sets = {**new, **domain.search_fields(merged)}
        keys = sets["dedup_keys"]
        after = {**merged, **sets, "version": doc["version"] + 1, "updated_at": now}
        view = contact_view(after)
        staged = (self.outbox.announce(ContactUpdated(contact=view, changed=sorted(set(new) - {"team"})))
                  + self._audit(after, "update", contact_view(doc), view))
        claimed = self.store.claim_keys([k for k in keys if k not in old_keys], contact_id, now)
        try:
            self.store.update_contact(contact_id, doc["version"], sets, staged, now)
        except VersionConflict:
            self.store.release_keys(claimed, contact_id)
            raise
        self.store.release_keys([k for k in old_keys if k not in keys], contact_id)
        self.store.sync_terms(contact_id, doc.get("search_terms") or (), sets["search_terms"])
        self._publish(contact_id, staged, terms_of=doc["version"] + 1)
        return view

    @rpc(C.LinkContactToCompany)
    def link_contact_to_company(self, req: C.LinkContactToCompany):
        company = self.store.get_company(req.company_id)
        return self._link(req.contact_id, company["_id"])

    @on_conflict()
    def _link(self, contact_id, company_id):
        doc = self.store.get_live_doc(contact_id, self._scope())
        if doc.get("company_id") == company_id:
            return contact_view(doc)
        return self._apply(doc, {"company_id": company_id}, clock.now())

    @rpc(C.SetConsent)
    @on_conflict()
    def set_consent(self, req: C.SetConsent):
        doc = self.store.get_live_doc(req.contact_id, self._scope())
        return self._consent(doc, req.channel, req.granted, req.source, clock.now())

    def _consent(self, doc, channel, granted, source, at):
        """One channel's consent decided (``at``), with its event, history and audit entry;
        no change, no event."""
        current = (doc.get("consents") or {}).get(channel) or domain.empty_consent()
        if current.get("granted") is granted:
            return contact_view(doc)
        now = clock.now()
        consent = {"granted": granted, "source": source, "at": at}
        history = domain.consent_history_after(doc.get("consent_history"), {"channel": channel, **consent})
        after = {**doc, "consents": {**(doc.get("consents") or {}), channel: consent},
                 "version": doc["version"] + 1, "updated_at": now}
        staged = self.outbox.announce(ConsentChanged(
            contact_id=doc["_id"], channel=channel, granted=granted, source=source, at=at,
            display_name=doc.get("display_name"))) + self._audit(after, "set_consent", contact_view(doc),
                                                                 contact_view(after))
        self.store.update_contact(doc["_id"], doc["version"], {f"consents.{channel}": consent,
                                                               "consent_history": history}, staged, now)
        self._publish(doc["_id"], staged)
        return contact_view(after)

    @handles("marketing", "contact_unsubscribed", idempotent=True)
    @on_conflict()
    def on_contact_unsubscribed(self, event):
        """Unsubscribed through a marketing message's link (or a complaint): that channel's
        consent is withdrawn, as of the unsubscribe. Idempotent by construction: a
        redelivery finds it withdrawn already, and a consent given again AFTER the
        unsubscribe is newer, so a late delivery never undoes it."""
        data = event.get("data") or {}
        channel = data.get("channel")
        if channel not in C.CONSENT_CHANNELS:
            return
        fact = contracts.parse(_Unsubscribed, data, prefix="data")
        at = fact.at
        try:
            doc = self.store.get_doc(fact.contact_id)
        except NotFound:
            return      # a contact that no longer exists has no consent to withdraw
        if doc.get("erased"):
            return
        current = (doc.get("consents") or {}).get(channel) or {}
        if current.get("at") is not None and current["at"] > at:
            return
        self._consent(doc, channel, False, f"unsubscribe:{data.get('campaign_id') or 'message'}"[:C.SOURCE_MAX], at)

    @rpc(C.GetConsentHistory)
    def get_consent_history(self, req: C.GetConsentHistory):
        """Internal (not on the gateway yet): the bounded audit trail of consent changes, oldest first."""
        doc = self.store.get_doc(req.contact_id, self._scope())
        return {"contact_id": doc["_id"], "history": [
            {**h, "at": clock.to_iso(h.get("at"))} for h in doc.get("consent_history") or []]}

    @rpc(C.SearchContacts)
    def search_contacts(self, req: C.SearchContacts):
        cursor = paging.decode(req.page_token, id=str)
        docs = self.store.search(words=search.query_words(req.text), tag=req.tag, stage=req.lifecycle_stage,
                                 owner=req.owner, after_id=cursor and cursor["id"], limit=req.size + 1,
                                 scope=self._scope())
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"contacts": [contact_view(d) for d in page], "next_page_token": token}

    @rpc(C.EraseContact)
    @on_conflict()
    def erase_contact(self, req: C.EraseContact):
        doc = self.store.get_doc(req.contact_id, self._scope())
        now = clock.now()
        self.store.mark_erased(doc["_id"], now)   # first: facts stored from now on are blanked
        if not doc.get("erased"):
            sets = domain.anonymized_fields(now)
            erased = {**doc, **sets}
            staged = self.outbox.announce(ContactErased(contact_id=doc["_id"])) + self._audit(
                erased, "erase", contact_view(doc), contact_view(erased), values=False)
            self.store.update_contact(doc["_id"], doc["version"], sets, staged, now)
            self.store.sync_terms(doc["_id"], doc.get("search_terms") or (), ())
            doc = {**doc, **sets, "version": doc["version"] + 1, "updated_at": now}
            self._publish(doc["_id"], staged, terms_of=doc["version"])
        # Also finishes an erase interrupted after its first write; harmless twice.
        self.store.anonymize_entries(doc["_id"], now)
        # Audit entries a crash left staged are written first (the relay's work, now), so
        # none lands with personal values after this.
        self.outbox.relay(self.store.contacts, older_than=timedelta(0))
        audit.anonymize(self.store.db, doc["_id"])
        self.store.release_all_keys(doc["_id"])
        return contact_view(doc)

    # ------------------------------------------------------------------ companies

    @rpc(C.CreateCompany)
    def create_company(self, req: C.CreateCompany):
        now = clock.now()
        company = req.company
        doc = {"_id": new_id("cmp"), "name": company.name, "domain": company.domain, "tags": list(company.tags or []),
               "created_at": now, "updated_at": now, "version": 1}
        view = company_view(doc)
        staged = self.outbox.audit("company", doc["_id"], "create", {}, view)
        stored = self.store.insert_company(doc, staged)
        if stored is not doc:   # the same create, replayed under its idempotency key
            return company_view(stored)
        self.outbox.publish(self.store.companies, doc["_id"], staged)
        return view

    @rpc(C.GetCompany)
    def get_company(self, req: C.GetCompany):
        return company_view(self.store.get_company(req.company_id))

    # ------------------------------------------------------------------ timeline

    @rpc(C.LogInteraction)
    def log_interaction(self, req: C.LogInteraction):
        doc = self.store.get_live_doc(req.contact_id, self._scope())
        entry = domain.interaction_entry(req, clock.now())
        who = self.outbox.principal     # an entry is its own audit record: who logged it, in which request
        return entry_view(self.store.add_entry({"contact_id": doc["_id"], **entry,
                                                "logged_by": who.subject if who else "",
                                                "request_id": self.outbox.correlation_id or ""}))

    @rpc(C.ListTimeline)
    def list_timeline(self, req: C.ListTimeline):
        doc = self.store.get_doc(req.contact_id, self._scope())
        cursor = paging.decode(req.page_token, at=str, id=str)
        after = None
        if cursor is not None:
            try:
                after = (clock.from_iso(cursor["at"]), cursor["id"])
            except ValueError:
                raise InvalidArgument.field("page_token", "is not a token this list returned") from None
        docs = self.store.timeline_page(doc["_id"], after, req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"at": clock.to_iso(d["occurred_at"]), "id": d["_id"]})
        return {"entries": [entry_view(d) for d in page], "next_page_token": token}

    @handles_timeline
    def on_timeline_fact(self, envelope):
        """Any service's customer-facing fact, stored as one entry (id derived from the
        fact's event id, so a redelivery adds nothing). Facts about an unknown or erased
        contact are kept anonymized: the order of events across services is not
        guaranteed, and an erased person's timeline must stay blank."""
        fact = contracts.parse(TimelineFact, envelope.get("data") or {}, prefix="data")
        entry = {"contact_id": fact.contact_id, "kind": fact.kind, "channel": fact.channel,
                 "direction": fact.direction, "summary": fact.summary, "occurred_at": fact.occurred_at,
                 "source": str(envelope.get("source") or "unknown"),
                 "reference": fact.reference.model_dump() if fact.reference else None, "data": fact.data}
        self.store.add_entry(entry, entry_id=derived_id("tle", envelope["event_id"]))
        if self.store.is_erased(fact.contact_id):  # write, then check: a racing erasure wins
            self.store.anonymize_entries(fact.contact_id, clock.now())

    # ------------------------------------------------------------------ timers

    def before_relay(self):
        """The term index of contacts whose write crashed before it is repaired first."""
        self.store.terms_leftovers()

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        counts = self.store.count_by_stage()
        for stage in C.LIFECYCLE_STAGES:
            CONTACTS_TOTAL.labels(stage).set(counts.get(stage, 0))
