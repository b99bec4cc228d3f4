"""Rebuilding the audience from scratch, or merging the producers' current records into
it, when events alone cannot be trusted to have built it (a lost database, a new kind of
fact, a bug fixed in a handler). Events are not kept anywhere to replay, so the rebuild
reads what each producer holds now, page by page, through their paging RPCs:

1. ``reset``     (optional) drop every audience document and empty the pages;
2. ``contacts``  every live contact: ``contacts.search_contacts`` with no text pages all
                 of them (the snapshot is exactly a contact_updated payload, consents included);
3. ``loyalty``   every member: ``loyalty.list_members`` (tier, balance, erased);
4. ``sales``     every purchase summary: ``sales.list_purchase_summaries``;
5. ``tickets``   every ticket: ``service-desk.list_tickets`` (active or not, satisfaction);
6. ``lists``     static lists' members (marketing's own ``list_members``);
7. ``engagement`` opens, clicks and replies of every message (marketing's own ``messages``);
                 without handing anyone to sales again;
8. ``segments``  every segment is filled again (segments.filling).

Each step applies snapshots through the same write path as the events (audience.writes),
so they merge with events that keep arriving meanwhile: the newer fact wins whichever way
it came (a snapshot without a clock of its own counts as of the moment it was read: a fact
staged before is in it, one staged after is newer). After ``contacts`` every live contact
is known, so the later steps touch only known contacts (an erased contact's orders or
tickets bring nobody back). One call does one page of one step and returns where to go on
(``next_page_token``); ``python -m marketing.audience.rebuild_cli`` loops until ``done``.
"""
from __future__ import annotations

from typing import Any, Callable

from crm_common import clock, paging
from crm_common.errors import InvalidArgument

from ..segments.store import SegmentStore
from . import state as S
from .store import AudienceStore
from .writes import AudienceWrites

STEPS = ("reset", "contacts", "loyalty", "sales", "tickets", "lists", "engagement", "segments")
#: A ticket in these statuses is open for the audience (the service desk's ACTIVE).
ACTIVE_TICKET = ("new", "open", "pending")


def _loyalty_snapshot(member: dict[str, Any]):
    at = S.parse_time(member.get("updated_at"))
    enrolled = S.parse_time(member.get("enrolled_at"))

    def change(state, now):
        if member.get("erased"):
            return S.apply_erased(state) if not state.get("erased") else state
        state = S.apply_member_enrolled(state, member.get("tier"), enrolled)
        state = S.apply_tier(state, member.get("tier"), at)
        return S.apply_balance(state, int(member.get("balance") or 0), at)
    return change


def _ticket_snapshot(ticket: dict[str, Any], read_at):
    csat = ticket.get("satisfaction") or {}

    def change(state, now):
        state = S.apply_ticket(state, ticket["id"], ticket.get("status") in ACTIVE_TICKET, read_at)
        if isinstance(csat.get("score"), int):
            state = S.apply_csat(state, csat["score"], S.parse_time(csat.get("received_at")) or read_at)
        return state
    return change


def _listed(segment_id: str, since):
    def change(state, now):
        if segment_id in (state.get("segments") or {}) or state.get("erased"):
            return state
        return {**state, "segments": {**(state.get("segments") or {}), segment_id: {"since": since, "kind": "static"}}}
    return change


class Rebuild:
    def __init__(self, audience: AudienceStore, segments: SegmentStore, writes: AudienceWrites, messages,
                 call: Callable[[str, str, dict[str, Any]], dict[str, Any]], engaged: Callable[..., Any]):
        self.audience, self.segments, self.writes, self.messages = audience, segments, writes, messages
        self.call, self.engaged = call, engaged

    def step(self, token: str, size: int, reset: bool) -> dict[str, Any]:
        cursor = paging.decode(token, s=str, c=str) or {"s": STEPS[0], "c": ""}
        step, at = cursor["s"], cursor["c"]
        if step not in STEPS:
            raise InvalidArgument.field("page_token", "is not a token rebuild_audience returned")
        applied, nxt = getattr(self, f"_{step}")(at, size, reset)
        if nxt is None:
            following = STEPS.index(step) + 1
            done = following == len(STEPS)
            token = "" if done else paging.encode(s=STEPS[following], c="")
        else:
            done, token = False, paging.encode(s=step, c=nxt)
        return {"step": step, "applied": applied, "done": done, "next_page_token": token}

    def _reset(self, at: str, size: int, reset: bool):
        if reset:
            self.audience.drop_all()
        return 0, None

    def _contacts(self, at: str, size: int, reset: bool):
        page = self.call("contacts", "search_contacts", {"text": "", "page_size": size, "page_token": at})
        for contact in page["contacts"]:
            self.writes.apply(contact["id"], lambda s, now, c=contact: S.apply_contact(s, c))
        return len(page["contacts"]), page["next_page_token"] or None

    def _loyalty(self, at: str, size: int, reset: bool):
        page = self.call("loyalty", "list_members", {"page_size": size, "page_token": at})
        for member in page["members"]:
            self.writes.apply(member["contact_id"], _loyalty_snapshot(member), create=False)
        return len(page["members"]), page["next_page_token"] or None

    def _sales(self, at: str, size: int, reset: bool):
        read_at = clock.now()
        page = self.call("sales", "list_purchase_summaries", {"page_size": size, "page_token": at})
        for summary in page["summaries"]:
            self.writes.apply(summary["contact_id"], lambda s, now, x=summary: S.apply_summary(s, x, read_at),
                              create=False)
        return len(page["summaries"]), page["next_page_token"] or None

    def _tickets(self, at: str, size: int, reset: bool):
        read_at = clock.now()
        page = self.call("service-desk", "list_tickets", {"page_size": size, "page_token": at})
        for ticket in page["tickets"]:
            if not ticket.get("erased"):
                self.writes.apply(ticket["contact_id"], _ticket_snapshot(ticket, read_at), create=False)
        return len(page["tickets"]), page["next_page_token"] or None

    def _lists(self, at: str, size: int, reset: bool):
        query = {"_id": {"$gt": at}} if at else {}
        rows = list(self.segments.lists.find(query).sort("_id", 1).limit(size))
        for row in rows:
            self.writes.apply(row["contact_id"], _listed(row["segment_id"], row["added_at"]), create=False)
        return len(rows), rows[-1]["_id"] if len(rows) == size else None

    def _engagement(self, at: str, size: int, reset: bool):
        query = {"_id": {"$gt": at}} if at else {}
        rows = list(self.messages.find(query, {"contact_id": 1, "campaign_id": 1, "channel": 1, "opened_at": 1,
                                               "clicks": 1, "replied_at": 1}).sort("_id", 1).limit(size))
        applied = 0
        for m in rows:
            data = {"contact_id": m["contact_id"], "message_id": m["_id"], "campaign_id": m["campaign_id"],
                    "channel": m["channel"]}
            facts = ([("opened", m["opened_at"], None)] if m.get("opened_at") else []) + \
                [("clicked", c["at"], c["link"]) for c in (m.get("clicks") or {}).values()] + \
                ([("replied", m["replied_at"], None)] if m.get("replied_at") else [])
            for kind, when, link in facts:
                self.writes.apply(m["contact_id"], self.engaged(kind, {**data, "link": link}, when, handoff=False),
                                  create=False)
                applied += 1
        return applied, rows[-1]["_id"] if len(rows) == size else None

    def _segments(self, at: str, size: int, reset: bool):
        docs = self.segments.all()
        for doc in docs:
            self.segments.segments.update_one({"_id": doc["_id"]}, {"$set": {"fill": "pending", "fill_lease": None,
                                                                              "updated_at": clock.now()}})
        self.segments.bump()
        return len(docs), None
