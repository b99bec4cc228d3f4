"""Entrypoints of leads: capture (with duplicate merging), assignment, scoring,
qualification and conversion.

Capture order (no transactions): claim the lead's email and phone, take a slot of the
owner the rules choose, insert the lead with its events and audit entry staged, publish.
A failure after the claims gives them (and the slot) back; a crash leaves a stale claim
(taken over by the next capture, crm_common.claims) or a slot counted once too often
(the reconcile timer recounts).
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable

from prometheus_client import Counter

from crm_common import audit, clock, contracts, paging
from crm_common.claims import KeyHeld
from crm_common.errors import AlreadyExists, FailedPrecondition, NotFound, VersionConflict
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import rpc
from crm_common.nameko.remote import call
from crm_common.retry import on_conflict

from ..deals import domain as deal_rules
from ..events import (LeadAssigned, LeadConverted, LeadCreated, LeadMerged, LeadQualificationChanged,
                      LeadScored)
from . import contracts as C
from . import domain, scoring
from .views import brief_view, lead_view, rules_view

LEADS_CAPTURED = Counter("crm_sales_leads_captured_total", "Lead captures, new or merged into an open lead",
                         ["channel", "outcome"])
AUDITED = (*domain.PERSON_FIELDS, "notes", "status", "owner", "team", "grade", "contact_id", "disqualified",
           "conversion")
HOLDER_WAIT_SECONDS = 2.0


class LeadEntrypoints:
    """Mixed into SalesService (service.py): ``self.store.leads`` is the LeadStore."""

    # -- helpers --------------------------------------------------------------------------
    def _lead_events(self, lead: dict[str, Any], after: dict[str, Any], *, assigned: str | None = None,
                     qualification: dict[str, Any] | None = None) -> list:
        """The events a change of ``lead`` into ``after`` announces: an assignment, a grade
        move, a qualification change."""
        now, contact_id = after["updated_at"], after.get("contact_id") or None
        out = []
        if assigned is not None:
            out.append(LeadAssigned(lead_id=after["_id"], contact_id=contact_id, owner=after["owner"],
                                    team=after["team"], previous_owner=lead.get("owner") or "", reason=assigned,
                                    assigned_at=now))
        if lead.get("grade") and after.get("grade") != lead.get("grade"):
            out.append(LeadScored(lead_id=after["_id"], contact_id=contact_id, score=after["score"],
                                  grade=after["grade"], previous_grade=lead["grade"], scored_at=now))
        if qualification is not None:
            out.append(LeadQualificationChanged(lead_id=after["_id"], contact_id=contact_id, changed_at=now,
                                                **qualification))
        return out

    def _write_lead(self, lead: dict[str, Any], sets: dict[str, Any], operation: str, *, events: list = (),
                    assigned: str | None = None, qualification: dict[str, Any] | None = None,
                    rescore: bool = False) -> dict[str, Any]:
        """One guarded write of ``sets`` (rescored first when asked), with the events it
        announces and its audit entry; then publish. Returns the lead after it."""
        now = clock.now()
        after = {**lead, **sets, "updated_at": now, "version": lead["version"] + 1}
        if rescore:
            scores = scoring.rescored(after, self.store.leads.scoring_rules())
            sets, after = {**sets, **scores}, {**after, **scores}
        announced = [*events, *self._lead_events(lead, after, assigned=assigned, qualification=qualification)]
        staged = [e for event in announced for e in self.outbox.announce(event)]
        staged += self.outbox.audit("lead", lead["_id"], operation,
                                    *audit.changed(lead_view(lead), lead_view(after), AUDITED),
                                    contact_id=after.get("contact_id") or None, owner=after.get("owner"),
                                    team=after.get("team"))
        self.store.leads.update(lead, sets, staged, now)
        self.outbox.publish(self.store.leads.leads, lead["_id"], staged)
        return after

    def _lead_worked(self, lead: dict[str, Any]) -> None:
        """A new lead somebody acts on (an activity about it) is being worked."""
        if lead["status"] == "new":
            try:
                self._write_lead(lead, {"status": "working"}, "work")
            except VersionConflict:
                pass   # somebody else changed it: their write stands

    def _visible(self, lead: dict[str, Any]) -> bool:
        scope = self._scope()
        return all(lead.get(k) == v for k, v in scope.items())

    # -- capture ------------------------------------------------------------------------
    @rpc(C.CaptureLead)
    def capture_lead(self, req: C.CaptureLead):
        now = clock.now()
        fields = req.lead.model_dump()
        if req.contact_id:
            self._require_contact(req.contact_id, "contact_id")
        lead_id = new_id("lead")
        doc = domain.new_lead(lead_id, fields, req.channel, req.attribution and req.attribution.model_dump(),
                              req.contact_id or self.store.contacts.contact_with(domain.dedup_keys(fields)), now)
        manual = self._owner_and_team(req.owner, "owner") if req.owner else None
        try:
            claimed = self.store.leads.claims.claim(doc["dedup_keys"], lead_id, now)
        except KeyHeld as held:
            if held.holder == lead_id:   # pragma: no cover - claims never report our own id
                raise
            return self._merge_capture(held.holder, doc, fields, now)
        owner, team, reason = manual + ("manual",) if manual else self._assign(doc["country"], doc["region"])
        try:
            if manual and owner:
                self.store.team.count_slot(owner)
            doc.update(domain.assignment(doc, owner, team, reason, self._by(), now))
            doc.update(scoring.rescored(doc, self.store.leads.scoring_rules()))
            view = lead_view(doc)
            contact_id = doc.get("contact_id") or None
            staged = self.outbox.announce(LeadCreated(lead_id=lead_id, contact_id=contact_id, lead=view))
            if owner or team:
                staged += self.outbox.announce(LeadAssigned(lead_id=lead_id, contact_id=contact_id, owner=owner,
                                                            team=team, previous_owner="", reason=reason,
                                                            assigned_at=now))
            staged += self.outbox.audit("lead", lead_id, "capture", {}, view, contact_id=contact_id, owner=owner,
                                        team=team)
            inserted = self.store.leads.insert(doc, staged)
        except BaseException:
            self.store.leads.claims.release(claimed, lead_id)
            self.store.team.give_back_slot(owner)
            raise
        if not inserted:   # the same capture, replayed under its idempotency key
            self.store.team.give_back_slot(owner)
            return {"lead": lead_view(self.store.leads.find(lead_id)), "merged": False}
        self.outbox.publish(self.store.leads.leads, lead_id, staged)
        LEADS_CAPTURED.labels(req.channel, "new").inc()
        return {"lead": view, "merged": False}

    def _merge_capture(self, holder: str, doc: dict[str, Any], fields: dict[str, Any], now: datetime):
        """Merge a capture into the open lead ``holder`` (which claimed the person's email or
        phone first; it may still be between its claim and its insert: wait a moment)."""
        deadline = time.monotonic() + HOLDER_WAIT_SECONDS
        while True:
            existing = self.store.leads.find(holder)
            if existing is not None and domain.is_open(existing["status"]):
                break
            if time.monotonic() > deadline:
                raise VersionConflict("a lead with this email or phone is being captured right now; retry",
                                      {"lead_id": holder})
            time.sleep(0.05)
        after = self._merge_into(holder, doc, fields, now)
        LEADS_CAPTURED.labels(doc["channel"], "merged").inc()
        return {"lead": lead_view(after) if self._visible(after) else brief_view(after), "merged": True}

    @on_conflict(attempts=25, max_wait=0.05)
    def _merge_into(self, holder: str, doc: dict[str, Any], fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        """One try at merging (many captures of one person may race: each try re-reads)."""
        existing = self.store.leads.find(holder)
        sets = domain.merged(existing, fields, doc["touches"][0], doc.get("contact_id"), now)
        added = [k for k in sets.get("dedup_keys", []) if k not in (existing.get("dedup_keys") or [])]
        try:
            self.store.leads.claims.claim(added, holder, now)
        except KeyHeld:   # the new email or phone is another open lead's: leave it out
            for key in added:
                sets.pop(key.partition(":")[0], None)
            sets["dedup_keys"] = existing.get("dedup_keys") or []
        event = LeadMerged(lead_id=holder, contact_id=sets.get("contact_id") or existing.get("contact_id"),
                           touch={**doc["touches"][0], "at": clock.to_iso(now)}, merged_at=now)
        return self._write_lead(existing, sets, "merge", events=[event], rescore=True)

    # -- reading ------------------------------------------------------------------------
    @rpc(C.GetLead)
    def get_lead(self, req: C.GetLead):
        return lead_view(self.store.leads.get(req.lead_id, self._scope()))

    @rpc(C.ListLeads)
    def list_leads(self, req: C.ListLeads):
        cursor = paging.decode(req.page_token, id=str)
        docs = self.store.leads.page(status=req.status, owner=req.owner, grade=req.grade, scope=self._scope(),
                                     after_id=cursor and cursor["id"], limit=req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"leads": [lead_view(d) for d in page], "next_page_token": token}

    # -- changing -----------------------------------------------------------------------
    @rpc(C.UpdateLead)
    def update_lead(self, req: C.UpdateLead):
        mask = list(dict.fromkeys(req.update_mask))
        changes = contracts.parse(C.LeadIn, {p: req.lead.get(p) for p in mask}, prefix="lead",
                                  context=self.validation_context()).model_dump()
        lead = self.store.leads.get(req.lead_id, self._scope())
        if lead["version"] != req.expected_version:
            raise VersionConflict(f"lead {lead['_id']} is at version {lead['version']}, not {req.expected_version}; "
                                  "reload it and apply your change again",
                                  {"lead_id": lead["_id"], "current_version": lead["version"]})
        if lead.get("erased"):
            raise FailedPrecondition(f"lead {lead['_id']} was erased", {"lead_id": lead["_id"]})
        sets = {p: changes[p] for p in mask if changes[p] != lead.get(p)}
        if not sets:
            return lead_view(lead)
        merged = {**lead, **sets}
        if not (merged.get("email") or merged.get("phone")):
            raise FailedPrecondition("a lead needs an email or a phone number: keep one of them",
                                     {"lead_id": lead["_id"]})
        keys = domain.dedup_keys(merged) if domain.is_open(lead["status"]) else []
        old = lead.get("dedup_keys") or []
        sets["dedup_keys"] = keys
        now = clock.now()
        try:
            claimed = self.store.leads.claims.claim([k for k in keys if k not in old], lead["_id"], now)
        except KeyHeld as held:
            raise AlreadyExists(f"{domain.describe_key(held.key)} belongs to the open lead {held.holder}",
                                {"existing_id": held.holder, "field": f"lead.{held.key.partition(':')[0]}"}) from None
        try:
            after = self._write_lead(lead, {**sets, **domain.worked(lead)}, "update", rescore=True)
        except BaseException:
            self.store.leads.claims.release(claimed, lead["_id"])
            raise
        self.store.leads.claims.release([k for k in old if k not in keys], lead["_id"])
        return lead_view(after)

    @rpc(C.AssignLead)
    @on_conflict()
    def assign_lead(self, req: C.AssignLead):
        lead = self.store.leads.get(req.lead_id, self._scope())
        domain.require(lead, C.OPEN_STATUSES, "assigned")
        if req.owner:
            owner, team = self._owner_and_team(req.owner, "owner")
            self._manual_owner(owner)
            if owner == lead.get("owner"):
                return lead_view(lead)
            self.store.team.count_slot(owner)   # by hand: capacity yields
            reason = "manual"
        else:
            owner, team, reason = self._assign(lead.get("country"), lead.get("region"), exclude=lead.get("owner"))
        now = clock.now()
        try:
            after = self._write_lead(lead, domain.assignment(lead, owner, team, reason, self._by(), now), "assign",
                                     assigned=reason)
        except BaseException:
            self.store.team.give_back_slot(owner)
            raise
        self.store.team.give_back_slot(lead.get("owner"))
        return lead_view(after)

    @rpc(C.QualifyLead)
    @on_conflict()
    def qualify_lead(self, req: C.QualifyLead):
        lead = self.store.leads.get(req.lead_id, self._scope())
        if lead["status"] == "qualified":
            return lead_view(lead)
        domain.require(lead, ("new", "working"), "qualified")
        return lead_view(self._write_lead(lead, {"status": "qualified"}, "qualify",
                                          qualification={"status": "qualified"}))

    @rpc(C.DisqualifyLead)
    @on_conflict()
    def disqualify_lead(self, req: C.DisqualifyLead):
        lead = self.store.leads.get(req.lead_id, self._scope())
        if lead["status"] == "disqualified":
            return lead_view(lead)
        domain.require(lead, C.OPEN_STATUSES, "disqualified")
        now = clock.now()
        sets = {"status": "disqualified", "dedup_keys": [],
                "disqualified": {"reason": req.reason, "note": req.note, "at": now, "by": self._by()}}
        after = self._write_lead(lead, sets, "disqualify", qualification={
            "status": "disqualified", "reason": req.reason, "note": req.note or ""})
        self._closed(lead)
        return lead_view(after)

    def _closed(self, lead: dict[str, Any]) -> None:
        """A lead left the open statuses: its email and phone are free, its owner has room."""
        self.store.leads.claims.release(lead.get("dedup_keys") or [], lead["_id"])
        self.store.team.give_back_slot(lead.get("owner"))

    @rpc(C.ReopenLead)
    @on_conflict()
    def reopen_lead(self, req: C.ReopenLead):
        lead = self.store.leads.get(req.lead_id, self._scope())
        domain.require(lead, ("disqualified",), "reopened")
        keys, now = domain.dedup_keys(lead), clock.now()
        try:
            claimed = self.store.leads.claims.claim(keys, lead["_id"], now)
        except KeyHeld as held:
            raise FailedPrecondition(f"{domain.describe_key(held.key)} belongs to the open lead {held.holder} now: "
                                     "work that one", {"existing_id": held.holder}) from None
        try:
            after = self._write_lead(lead, {"status": "working", "dedup_keys": keys, "disqualified": None},
                                     "reopen", qualification={"status": "working"})
        except BaseException:
            self.store.leads.claims.release(claimed, lead["_id"])
            raise
        if lead.get("owner"):
            self.store.team.count_slot(lead["owner"])
        return lead_view(after)

    # -- conversion -----------------------------------------------------------------------
    @rpc(C.ConvertLead)
    def convert_lead(self, req: C.ConvertLead):
        """Each step is idempotent and recorded on the lead before the next one: the contact
        (created in contacts with an idempotency key derived from the lead, or the one that
        has the lead's email or phone already), the company, the deal (an id derived from the
        lead), then the lead itself. A retry after any failure resumes where it stopped."""
        lead = self.store.leads.get(req.lead_id, self._scope())
        if lead["status"] == "converted":
            return self._converted(lead)
        domain.require(lead, ("qualified",), "converted (qualify it first)")
        progress = dict(lead.get("conversion") or {})
        if req.create_deal:   # a bad deal draft is refused before anything is created
            pipeline = self.store.deals.pipeline(req.deal and req.deal.pipeline_id, "deal.pipeline_id")
            deal_rules.stage(pipeline, req.deal and req.deal.stage_id, "deal.stage_id")
        if not progress.get("company_id") and (req.company_id or lead.get("company_name")):
            progress["company_id"], progress["company_existed"] = self._company_of(lead, req.company_id)
            lead = self._record_progress(lead, progress)
        if not progress.get("contact_id"):
            progress["contact_id"], progress["contact_existed"] = self._contact_of(lead, progress.get("company_id"))
            lead = self._record_progress(lead, progress)
        if req.create_deal and not progress.get("deal_id"):
            draft = req.deal.model_dump(mode="json") if req.deal else {}
            amount = draft.get("amount") or {"amount_minor": 0, "currency": self._currency()}
            fields = {"name": draft.get("name") or f"{lead.get('company_name') or self._person(lead)}",
                      "contact_id": progress["contact_id"], "company_id": progress.get("company_id"),
                      "amount": amount, "expected_close_date": draft.get("expected_close_date"),
                      "pipeline_id": draft.get("pipeline_id"), "stage_id": draft.get("stage_id"), "products": []}
            deal = self._open_deal(fields, deal_id=derived_id("deal", "lead", lead["_id"]),
                                   owner=lead.get("owner") or None, prefix="deal", lead_id=lead["_id"])
            progress["deal_id"] = deal["id"]
        now = clock.now()
        progress["converted_at"] = now
        event = LeadConverted(lead_id=lead["_id"], contact_id=progress["contact_id"],
                              company_id=progress.get("company_id"), deal_id=progress.get("deal_id"), converted_at=now)
        for _ in range(5):
            try:
                after = self._write_lead(lead, {"status": "converted", "conversion": progress, "dedup_keys": [],
                                                "contact_id": progress["contact_id"]}, "convert", events=[event])
                break
            except VersionConflict:
                lead = self.store.leads.find(lead["_id"])
                if lead["status"] == "converted":
                    return self._converted(lead)
        else:
            raise VersionConflict("the lead is busy; retry the conversion", {"lead_id": req.lead_id})
        self._closed(lead)
        return self._converted(after)

    def _converted(self, lead: dict[str, Any]) -> dict[str, Any]:
        done = lead.get("conversion") or {}
        return {"lead": lead_view(lead), "contact_id": done.get("contact_id") or "",
                "company_id": done.get("company_id") or "", "deal_id": done.get("deal_id") or "",
                "contact_existed": bool(done.get("contact_existed")),
                "company_existed": bool(done.get("company_existed"))}

    def _record_progress(self, lead: dict[str, Any], progress: dict[str, Any]) -> dict[str, Any]:
        """Keep what a conversion did so far on the lead (a retry resumes from it)."""
        for _ in range(5):
            try:
                return self.store.leads.update(lead, {"conversion": progress}, [], clock.now())
            except VersionConflict:
                lead = self.store.leads.find(lead["_id"])
                progress = {**(lead.get("conversion") or {}), **progress}
        raise VersionConflict("the lead is busy; retry the conversion", {"lead_id": lead["_id"]})

    def _company_of(self, lead: dict[str, Any], company_id: str | None) -> tuple[str, bool]:
        """The company a converted lead's contact works for: the one the caller names
        (it must exist), else a new one in contacts, else (contacts says the lead's
        website is another company's domain) that one."""
        if company_id:
            return call(self.contacts_rpc, "get_company", company_id=company_id)["id"], True
        return _created_or_existing(lambda: call(
            self.contacts_rpc, "create_company",
            company={"name": lead["company_name"], "domain": lead.get("website") or "", "tags": []},
            idempotency_key=f"lead-company:{lead['_id']}"))

    def _contact_of(self, lead: dict[str, Any], company_id: str | None) -> tuple[str, bool]:
        """The contact a converted lead becomes: the one it names, else a new one in
        contacts, else (contacts says the email or phone is taken) that one."""
        if lead.get("contact_id"):
            return lead["contact_id"], True
        contact = {"given_name": lead.get("given_name") or "", "family_name": lead.get("family_name") or "",
                   "emails": [{"address": lead["email"], "primary": True}] if lead.get("email") else [],
                   "phones": [{"number": lead["phone"]}] if lead.get("phone") else [],
                   "lifecycle_stage": "sales_qualified", "owner": lead.get("owner") or "",
                   "company_id": company_id or "",
                   "address": {"country": lead.get("country") or "", "region": lead.get("region") or ""}}
        return _created_or_existing(lambda: call(self.contacts_rpc, "create_contact", contact=contact,
                                                 idempotency_key=f"lead-contact:{lead['_id']}"))

    def _person(self, lead: dict[str, Any]) -> str:
        return " ".join(x for x in (lead.get("given_name"), lead.get("family_name")) if x) or lead["_id"]

    def _currency(self) -> str:
        return str(self.config.get("SALES_DEFAULT_CURRENCY") or "EUR")

    # -- behaviour and scoring ------------------------------------------------------------
    @rpc(C.TrackLeadActivity)
    def track_lead_activity(self, req: C.TrackLeadActivity):
        if req.lead_id:
            lead = self.store.leads.get(req.lead_id, self._scope())
        else:
            holder = self.store.leads.holder_of(f"email:{req.email}")
            lead = self.store.leads.find(holder) if holder else None
            if lead is None or not self._visible(lead):
                raise NotFound(f"no open lead with email {req.email}", {"email": req.email})
        domain.require(lead, C.OPEN_STATUSES, "tracked")
        return lead_view(self._record_fact(lead, req.kind, clock.now(), req.detail, "api"))

    @on_conflict()
    def _record_fact(self, lead: dict[str, Any], kind: str, at: datetime, detail: str | None,
                     source: str, ref: str | None = None) -> dict[str, Any]:
        """Count the fact once: two deliveries of one event racing for the lead are
        decided by the guarded write, and the loser finds the event in the history."""
        lead = self.store.leads.find(lead["_id"]) or lead
        if domain.knows_fact(lead, ref):
            return lead
        return self._write_lead(lead, domain.fact(lead, kind, at, detail, source, ref), "track", rescore=True)

    def _facts_about_contact(self, contact_id: str, kind: str, at: datetime, detail: str | None,
                             source: str, ref: str) -> int:
        """A behavioural fact from the bus (event ``ref``) about a contact reaches its open leads."""
        leads = self.store.leads.open_of_contact(contact_id)
        for lead in leads:
            self._record_fact(lead, kind, at, detail, source, ref)
        return len(leads)

    @rpc(C.GetScoringRules)
    def get_scoring_rules(self, req: C.GetScoringRules):
        return rules_view(self.store.leads.scoring_rules())

    @rpc(C.SetScoringRules)
    def set_scoring_rules(self, req: C.SetScoringRules):
        rules = {"rules": [r.model_dump() for r in req.rules], "grades": [g.model_dump() for g in req.grades]}
        before = rules_view(self.store.leads.scoring_rules())
        staged = self.outbox.audit("scoring_rules", "scoring", "update", {"rules": before["rules"],
                                                                           "grades": before["grades"]}, rules)
        doc = self.store.leads.set_scoring_rules(rules, staged, clock.now())
        self.outbox.publish(self.store.leads.settings, "scoring", staged)
        return rules_view(doc)

    def _rescore_stale(self, limit: int = 200) -> int:
        """Leads scored with older rules than the ones in force, scored again (each one
        guarded by its version: two replicas doing it at once write each lead once)."""
        rules = self.store.leads.scoring_rules()
        done = 0
        for lead in self.store.leads.to_rescore(int(rules.get("version") or 0), limit):
            try:
                self._write_lead(lead, {}, "rescore", rescore=True)
                done += 1
            except VersionConflict:
                pass
        return done

    # -- timers' work (see service.py) -------------------------------------------------------
    def _assign_waiting(self) -> int:
        """Open leads waiting in a team's queue (nobody had room) get an owner when one has."""
        done = 0
        for lead in self.store.leads.waiting():
            owner, team, reason = self._next_in_team(lead["team"], reason="territory")
            if not owner:
                continue
            try:
                self._write_lead(lead, domain.assignment(lead, owner, team, reason, self._by(), clock.now()),
                                 "assign", assigned=reason)
                done += 1
            except BaseException:
                self.store.team.give_back_slot(owner)
                raise
        return done

    def _reassign_leads_of(self, rep_id: str) -> int:
        moved = 0
        for lead in self.store.leads.open_of_owner(rep_id):
            owner, team, _ = self._assign(lead.get("country"), lead.get("region"), exclude=rep_id)
            try:
                self._write_lead(lead, domain.assignment(lead, owner, team, "owner_deactivated", self._by(),
                                                         clock.now()), "assign", assigned="owner_deactivated")
            except VersionConflict:
                self.store.team.give_back_slot(owner)
                continue
            self.store.team.give_back_slot(rep_id)
            moved += 1
        return moved

    def _erase_leads_of(self, contact_id: str) -> int:
        """The person behind the contact's leads is erased: their personal fields too."""
        done = 0
        for lead in self.store.leads.of_contact(contact_id):
            if lead.get("erased"):
                continue
            for _ in range(5):
                try:
                    self.store.leads.update(lead, domain.erased_fields(clock.now()), [], clock.now())
                    break
                except VersionConflict:
                    lead = self.store.leads.find(lead["_id"])
            self.store.leads.claims.release(lead.get("dedup_keys") or [], lead["_id"])
            done += 1
        return done


def _created_or_existing(create: Callable[[], dict[str, Any]]) -> tuple[str, bool]:
    """(id, False) of what ``create`` made in contacts, or (id, True) of the record that
    already holds its unique key (ALREADY_EXISTS names it: ``existing_id``)."""
    try:
        return create()["id"], False
    except AlreadyExists as exists:
        existing = exists.details.get("existing_id")
        if not existing:
            raise
        return existing, True
