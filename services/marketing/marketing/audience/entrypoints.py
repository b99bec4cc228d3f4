"""The audience's entrypoints: the event handlers that build the read model from other
services' facts, the profile and survey RPCs.

Every handler is idempotent by construction (audience.state: snapshots win by their own
clock, sets are keyed by what they are about; the write is guarded by the document's
version), so no handled-event markers are kept (``idempotent=True``). Queues are durable
(SERVICE_POOL): after downtime the service catches up from them.

Adding a source is a few lines: a subscription in the registry and a handler here whose
change is a function of audience.state.
"""
from __future__ import annotations

from typing import Any

from crm_common.nameko.base import rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.remote import call, remote

from ..common import Area, contact_id
from ..common import event_time as _at
from ..engagement.handoff import engaged
from ..events import SurveyAnswered
from . import contracts as C
from . import state as S
from .rebuild import ACTIVE_TICKET, Rebuild
from .views import profile_view
from .writes import Outcome

CALL_TIMEOUT_SECONDS = 30


class AudienceEntrypoints(Area):
    contacts_rpc = remote("contacts", CALL_TIMEOUT_SECONDS)
    loyalty_rpc = remote("loyalty", CALL_TIMEOUT_SECONDS)
    sales_rpc = remote("sales", CALL_TIMEOUT_SECONDS)
    service_desk_rpc = remote("service-desk", CALL_TIMEOUT_SECONDS)

    def _fact(self, cid: Any, change) -> None:
        self.writes().apply(contact_id(cid), change, recent_defs=True)

    # -- contacts ---------------------------------------------------------------------------
    @handles("contacts", "contact_created", idempotent=True)
    def on_contact_created(self, event):
        contact = event["data"]["contact"]
        self._fact(contact["id"], lambda s, now: S.apply_contact(s, contact))

    @handles("contacts", "contact_updated", idempotent=True)
    def on_contact_updated(self, event):
        contact = event["data"]["contact"]
        self._fact(contact["id"], lambda s, now: S.apply_contact(s, contact))

    @handles("contacts", "consent_changed", idempotent=True)
    def on_consent_changed(self, event):
        data = event["data"]
        at = _at(data.get("at"), event)
        self._fact(data["contact_id"], lambda s, now: S.apply_consent(s, data.get("channel"),
                                                                       data.get("granted") is True, at))

    @handles("contacts", "contact_erased", idempotent=True)
    def on_contact_erased(self, event):
        cid = contact_id(event["data"]["contact_id"])
        self._fact(cid, lambda s, now: S.apply_erased(s) if not s.get("erased") else s)
        self.store.campaigns.scrub_contact(cid)

    # -- sales ------------------------------------------------------------------------------
    @handles("sales", "order_paid", idempotent=True)
    def on_order_paid(self, event):
        data = event["data"]
        paid_at, total = _at(data.get("paid_at"), event), data.get("total") or {}
        self._fact(data["contact_id"], lambda s, now: S.apply_order_paid(s, str(data["order_id"]), paid_at, total))

    @handles("sales", "order_refunded", idempotent=True)
    def on_order_refunded(self, event):
        data = event["data"]
        at = _at(data.get("refunded_at"), event)
        self._fact(data["contact_id"], lambda s, now: S.apply_order_refunded(s, str(data["order_id"]), at))

    @handles("sales", "purchase_summary_changed", idempotent=True)
    def on_purchase_summary_changed(self, event):
        data = event["data"]
        at = _at(None, event)
        self._fact(data["contact_id"], lambda s, now: S.apply_summary(s, data.get("summary") or {}, at))

    # -- loyalty ----------------------------------------------------------------------------
    @handles("loyalty", "member_enrolled", idempotent=True)
    def on_member_enrolled(self, event):
        data = event["data"]
        at = _at(data.get("enrolled_at"), event)
        self._fact(data["contact_id"], lambda s, now: S.apply_member_enrolled(s, data.get("tier"), at))

    @handles("loyalty", "tier_changed", idempotent=True)
    def on_tier_changed(self, event):
        data = event["data"]
        at = _at(data.get("changed_at"), event)
        self._fact(data["contact_id"], lambda s, now: S.apply_tier(s, data.get("to_tier"), at))

    def _balance(self, event) -> None:
        data = event["data"]
        at = _at((data.get("entry") or {}).get("occurred_at"), event)
        balance = data.get("balance")
        if isinstance(balance, int):
            self._fact(data["contact_id"], lambda s, now: S.apply_balance(s, balance, at))

    @handles("loyalty", "points_earned", idempotent=True)
    def on_points_earned(self, event):
        self._balance(event)

    @handles("loyalty", "points_redeemed", idempotent=True)
    def on_points_redeemed(self, event):
        self._balance(event)

    @handles("loyalty", "points_expired", idempotent=True)
    def on_points_expired(self, event):
        self._balance(event)

    # -- the service desk: open tickets (a reopen is a status change) and satisfaction --------
    @handles("service-desk", "ticket_opened", idempotent=True)
    def on_ticket_opened(self, event):
        data = event["data"]
        at = _at(data.get("opened_at"), event)
        self._fact(data["contact_id"], lambda s, now: S.apply_ticket(s, str(data["ticket_id"]), True, at))

    @handles("service-desk", "ticket_status_changed", idempotent=True)
    def on_ticket_status_changed(self, event):
        data = event["data"]
        at, active = _at(data.get("changed_at"), event), data.get("to_status") in ACTIVE_TICKET
        self._fact(data["contact_id"], lambda s, now: S.apply_ticket(s, str(data["ticket_id"]), active, at))

    @handles("service-desk", "csat_received", idempotent=True)
    def on_csat_received(self, event):
        data = event["data"]
        at, score = _at(data.get("received_at"), event), data.get("score")
        if isinstance(score, int):
            self._fact(data["contact_id"], lambda s, now: S.apply_csat(s, score, at))

    # -- RPC --------------------------------------------------------------------------------
    @rpc(C.GetAudienceProfile)
    def get_audience_profile(self, req: C.GetAudienceProfile):
        """What marketing knows of the contact (an unknown contact answers ``known: false``:
        the audience learns of contacts from events, a moment after they change)."""
        return self._profile(req.contact_id)

    def _profile(self, cid: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = doc if doc is not None else self.store.audience.get(cid)
        names = {sid: d.name for sid, d in self.writes().cache.current(self.store.segments)[1].items()}
        return profile_view(cid, doc, self.writes().context(), names)

    @rpc(C.RebuildAudience)
    def rebuild_audience(self, req: C.RebuildAudience):
        """Internal (ops.rebuild): one page of one step of a rebuild (audience.rebuild)."""
        policy = self.settings().scoring
        rebuild = Rebuild(self.store.audience, self.store.segments, self.writes(), self.store.campaigns.messages,
                          self._call, lambda kind, data, at, handoff: engaged(kind, data, at, policy, handoff=handoff))
        return rebuild.step(req.page_token, req.size, req.reset)

    def _call(self, service: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A producer's paging RPC, as the caller of the rebuild (its token travels with it);
        Unavailable when it does not answer in time (retry the step)."""
        proxy = {"contacts": self.contacts_rpc, "loyalty": self.loyalty_rpc, "sales": self.sales_rpc,
                 "service-desk": self.service_desk_rpc}[service]
        return call(proxy, method, timeout=CALL_TIMEOUT_SECONDS, **kwargs)

    @rpc(C.RecordSurveyAnswers)
    def record_survey_answers(self, req: C.RecordSurveyAnswers):
        answers = {"preferred_channel": req.preferred_channel, "preferred_contact_time": req.preferred_contact_time,
                   "values": req.values, "timezone": req.timezone}
        given = {k: v for k, v in answers.items() if v not in (None, [], "")}

        def change(state, now):
            event = SurveyAnswered(contact_id=req.contact_id, survey=req.survey, answers=given, at=now)
            return Outcome(S.apply_survey(state, req.survey, given, now), events=[event])
        self.writes().apply(req.contact_id, change)
        return self._profile(req.contact_id)

