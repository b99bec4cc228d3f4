"""The contacts nameko service: RPC entrypoints (docs/rpc.md), loyalty event handlers
(the timeline) and the business gauge. Rules live in ``domain``, persistence and the
dedup claim protocol in ``store``; this module orders the writes and publishes.

Write order (no transactions): claims first, then the single contact write that also
stages its event, then releases, then publish. A crash anywhere leaves either stale
claims (taken over later, see store) or a pending event (re-published by the relay).
"""
from __future__ import annotations

import logging

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import clock
from crm_common.errors import InvalidArgument, VersionConflict
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.mongo import MongoStore
from crm_common.validation import Violations, plain_int, plain_str
from crm_common.validation import page_size as page_size_of

from . import domain
from . import events as E
from .store import CONTACTS, ContactsStore, company_to_wire, contact_to_wire, entry_to_wire

log = logging.getLogger(__name__)

CONTACTS_TOTAL = Gauge("crm_contacts", "Contacts (not erased) by lifecycle stage", ["lifecycle_stage"])
GAUGE_INTERVAL_SECONDS = 30
MAX_RETRIES = 5


class ContactsService(CrmService):
    name = "contacts"
    OUTBOX_COLLECTIONS = (CONTACTS,)

    store = MongoStore(ContactsStore)

    # ------------------------------------------------------------------ helpers

    def _default_cc(self) -> str | None:
        value = str(self.config.get("CONTACTS_DEFAULT_COUNTRY_CODE") or "").strip().lstrip("+")
        return value if value.isdigit() else None

    def _publish(self, contact_id: str, staged: list) -> None:
        self.outbox.publish(self.store.contacts, contact_id, staged)

    def _check_company(self, company_id) -> None:
        if company_id and not self.store.company_exists(company_id):
            raise InvalidArgument.field("company_id", f"no company {company_id}")

    # ------------------------------------------------------------------ contacts

    @rpc
    def create_contact(self, contact):
        now = clock.now()
        fields = domain.validate_new_contact(contact, now=now, default_country_code=self._default_cc())
        self._check_company(fields["company_id"])
        contact_id = new_id("con")
        keys = domain.dedup_keys(fields)
        doc = {"_id": contact_id, **fields, "erased": False, "search_text": domain.search_text(fields),
               "dedup_keys": keys, "consent_history": [
                   {"channel": ch, "granted": c["granted"], "source": c["source"], "at": now}
                   for ch, c in fields["consents"].items() if c["at"] is not None],
               "created_at": now, "updated_at": now, "version": 1}
        wire = contact_to_wire(doc)
        staged = [self.outbox.event(E.CONTACT_CREATED, contact_id, {"contact": wire})]
        self.store.claim_keys(keys, contact_id, now)
        try:
            self.store.insert_contact(doc, staged)
        except Exception:
            self.store.release_keys(keys, contact_id)
            raise
        self._publish(contact_id, staged)
        return wire

    @rpc
    def get_contact(self, contact_id):
        return contact_to_wire(self.store.get_doc(contact_id))

    @rpc
    def update_contact(self, contact_id, expected_version, changes):
        expected_version = plain_int(expected_version, "expected_version", minimum=1)
        now = clock.now()
        doc = self.store.get_live_doc(contact_id)
        if doc["version"] != expected_version:
            raise self.store.version_conflict(contact_id, expected_version)
        new = domain.validate_changes(doc, changes, now=now, default_country_code=self._default_cc())
        if not new:
            return contact_to_wire(doc)
        if "company_id" in new:
            self._check_company(new["company_id"])
        return self._apply(doc, new, now)

    def _apply(self, doc, new, now):
        """Claim added keys, write version-guarded with contact_updated, release removed keys."""
        contact_id = doc["_id"]
        merged = {**doc, **new}
        old_keys, keys = doc.get("dedup_keys") or [], domain.dedup_keys(merged)
        sets = {**new, "search_text": domain.search_text(merged), "dedup_keys": keys}
        after = {**merged, **sets, "version": doc["version"] + 1, "updated_at": now}
        wire = contact_to_wire(after)
        staged = [self.outbox.event(E.CONTACT_UPDATED, contact_id, {"contact": wire, "changed": sorted(new)})]
        claimed = self.store.claim_keys([k for k in keys if k not in old_keys], contact_id, now)
        if not self.store.update_contact(contact_id, doc["version"], sets, staged, now):
            self.store.release_keys(claimed, contact_id)
            raise self.store.version_conflict(contact_id, doc["version"])
        self.store.release_keys([k for k in old_keys if k not in keys], contact_id)
        self._publish(contact_id, staged)
        return wire

    @rpc
    def link_contact_to_company(self, contact_id, company_id):
        company = self.store.get_company(company_id)
        for _ in range(MAX_RETRIES):
            doc = self.store.get_live_doc(contact_id)
            if doc.get("company_id") == company["_id"]:
                return contact_to_wire(doc)
            try:
                return self._apply(doc, {"company_id": company["_id"]}, clock.now())
            except VersionConflict:
                continue
        raise self.store.version_conflict(contact_id, "the one read")

    @rpc
    def set_consent(self, contact_id, channel, granted, source):
        channel, granted, source = domain.validate_consent_change(channel, granted, source)
        for _ in range(MAX_RETRIES):
            doc = self.store.get_live_doc(contact_id)
            current = (doc.get("consents") or {}).get(channel) or domain.empty_consent()
            if current.get("granted") is granted:
                return contact_to_wire(doc)  # no change, no event
            now = clock.now()
            consent = {"granted": granted, "source": source, "at": now}
            history = domain.consent_history_after(doc.get("consent_history"), {"channel": channel, **consent})
            after = {**doc, "consents": {**(doc.get("consents") or {}), channel: consent},
                     "version": doc["version"] + 1, "updated_at": now}
            staged = [self.outbox.event(E.CONSENT_CHANGED, doc["_id"], {
                "contact_id": doc["_id"], "channel": channel, "granted": granted, "source": source,
                "at": clock.to_iso(now), "display_name": doc.get("display_name")})]
            sets = {f"consents.{channel}": consent, "consent_history": history}
            if self.store.update_contact(doc["_id"], doc["version"], sets, staged, now):
                self._publish(doc["_id"], staged)
                return contact_to_wire(after)
        raise self.store.version_conflict(contact_id, "the one read")

    @rpc
    def get_consent_history(self, contact_id):
        """Additive to docs/rpc.md: the bounded audit trail of consent changes, oldest first."""
        doc = self.store.get_doc(contact_id)
        return {"contact_id": doc["_id"], "history": [
            {**h, "at": clock.to_iso(h.get("at"))} for h in doc.get("consent_history") or []]}

    @rpc
    def search_contacts(self, text=None, tag=None, lifecycle_stage=None, owner=None, page_size=50,
                        page_token=None):
        size = page_size_of(page_size)
        pattern = domain.search_pattern(text)
        v = Violations()
        if tag not in (None, ""):
            try:
                tag = domain.normalize_tag(tag)
            except ValueError as exc:
                v.add("tag", str(exc))
        if lifecycle_stage not in (None, "") and lifecycle_stage not in domain.LIFECYCLE_STAGES:
            v.add("lifecycle_stage", f"must be one of: {', '.join(domain.LIFECYCLE_STAGES)}")
        v.raise_if_any()
        owner = plain_str(owner, "owner", max_len=domain.OWNER_MAX) if owner not in (None, "") else None
        after_id = domain.decode_contacts_token(page_token)
        docs = self.store.search(pattern=pattern, tag=tag or None, stage=lifecycle_stage or None, owner=owner,
                                 after_id=after_id, limit=size + 1)
        more = len(docs) > size
        docs = docs[:size]
        return {"contacts": [contact_to_wire(d) for d in docs],
                "next_page_token": domain.contacts_page_token(docs[-1]["_id"]) if more else ""}

    @rpc
    def erase_contact(self, contact_id):
        for _ in range(MAX_RETRIES):
            doc = self.store.get_doc(contact_id)
            now = clock.now()
            if doc.get("erased"):
                # Harmless twice; also finishes an erase interrupted after its first write.
                self.store.anonymize_manual_entries(doc["_id"], now)
                self.store.release_all_keys(doc["_id"])
                return contact_to_wire(doc)
            sets = domain.anonymized_fields(now)
            staged = [self.outbox.event(E.CONTACT_ERASED, doc["_id"], {"contact_id": doc["_id"]})]
            if self.store.update_contact(doc["_id"], doc["version"], sets, staged, now):
                self.store.anonymize_manual_entries(doc["_id"], now)
                self.store.release_all_keys(doc["_id"])
                self._publish(doc["_id"], staged)
                return contact_to_wire({**doc, **sets, "version": doc["version"] + 1, "updated_at": now})
        raise self.store.version_conflict(contact_id, "the one read")

    # ------------------------------------------------------------------ companies

    @rpc
    def create_company(self, company):
        if not isinstance(company, dict):
            raise InvalidArgument.field("company", "must be an object")
        v = Violations()
        unknown = set(company) - {"name", "domain", "tags", "id", "version", "created_at", "updated_at"}
        for key in sorted(unknown):
            v.add(str(key), "unknown field")
        name = domain.clean_text(company.get("name"), "name", v, max_len=domain.NAME_MAX, allow_empty=False)
        dom = None
        if company.get("domain") not in (None, ""):
            try:
                dom = domain.normalize_domain(company["domain"])
            except ValueError as exc:
                v.add("domain", str(exc))
        tags = domain.validate_tags(company.get("tags"), v)
        v.raise_if_any()
        now = clock.now()
        doc = {"_id": new_id("cmp"), "name": name, "domain": dom, "tags": tags,
               "created_at": now, "updated_at": now, "version": 1}
        self.store.insert_company(doc)
        return company_to_wire(doc)

    @rpc
    def get_company(self, company_id):
        return company_to_wire(self.store.get_company(company_id))

    # ------------------------------------------------------------------ timeline

    @rpc
    def log_interaction(self, contact_id, channel, direction, summary, occurred_at=None):
        doc = self.store.get_live_doc(contact_id)
        entry = domain.validate_interaction(channel, direction, summary, occurred_at, now=clock.now())
        return entry_to_wire(self.store.add_entry({"contact_id": doc["_id"], **entry}))

    @rpc
    def list_timeline(self, contact_id, page_size=50, page_token=None):
        size = page_size_of(page_size)
        doc = self.store.get_doc(contact_id)
        after = domain.decode_timeline_token(page_token)
        docs = self.store.timeline_page(doc["_id"], after, size + 1)
        more = len(docs) > size
        docs = docs[:size]
        token = domain.timeline_page_token(docs[-1]["occurred_at"], docs[-1]["_id"]) if more else ""
        return {"entries": [entry_to_wire(d) for d in docs], "next_page_token": token}

    def _on_loyalty(self, envelope):
        entry = domain.loyalty_timeline_entry(envelope)
        if entry is None:
            log.warning("ignoring loyalty event without a contact: %r", envelope.get("event_id"))
            return
        self.store.add_entry(entry, entry_id=derived_id("tle", "loyalty", envelope["event_id"]))

    @handles(E.LOYALTY, "member_enrolled")
    def on_member_enrolled(self, envelope):
        self._on_loyalty(envelope)

    @handles(E.LOYALTY, "points_earned")
    def on_points_earned(self, envelope):
        self._on_loyalty(envelope)

    @handles(E.LOYALTY, "points_redeemed")
    def on_points_redeemed(self, envelope):
        self._on_loyalty(envelope)

    @handles(E.LOYALTY, "points_expired")
    def on_points_expired(self, envelope):
        self._on_loyalty(envelope)

    @handles(E.LOYALTY, "tier_changed")
    def on_tier_changed(self, envelope):
        self._on_loyalty(envelope)

    # ------------------------------------------------------------------ gauges

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        counts = self.store.count_by_stage()
        for stage in domain.LIFECYCLE_STAGES:
            CONTACTS_TOTAL.labels(stage).set(counts.get(stage, 0))
