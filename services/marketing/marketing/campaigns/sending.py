"""The work of a send, done by timers on any replica: queueing a campaign's audience into
messages, delivering batches of them, completing the campaign. Every step is leased or
guarded (campaigns.store), so two replicas share the work and never send a message twice.

Per message, right before it goes out: the contact's current read model decides (consent
withdrawn a moment ago, an address gone, quiet hours, the frequency cap reserved in the
contact's own record), the budget pays for it (guarded ``$inc``: never over), the message
is claimed (the exactly-once write), rendered, handed to the server with retries and
backoff on transient failures (tenacity), and its outcome stored with its event.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Iterator

import eventlet
from prometheus_client import Counter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from crm_common import clock
from crm_common.errors import CrmError, VersionConflict
from crm_common.ids import derived_id

from ..audience.store import AudienceStore
from ..delivery import DeliveryError, Transient
from ..delivery import email as smtp
from ..delivery.sms import SmsProvider
from ..engagement import tokens
from ..events import CampaignCompleted, CampaignStarted, MessageFailed, MessageSent
from ..settings import Settings
from . import domain as D
from . import templates
from .recipients import recipients
from .store import CampaignStore, batch_id

log = logging.getLogger(__name__)

MESSAGES_TOTAL = Counter("crm_marketing_messages_total",
                         "Campaign messages by channel and outcome (sent, failed, bounced, skipped, deferred) and "
                         "reason (why skipped or deferred)", ["channel", "outcome", "reason"])

QUEUE_LEASE = timedelta(minutes=5)
BATCH_LEASE = timedelta(minutes=5)
TICK_SECONDS = 20.0          # a delivery tick returns after this long (nameko waits for it on stop)
INSERT_CHUNK = 1000
PROGRESS_EVERY = 25          # messages of a batch between two progress writes


def message_id(campaign_id: str, contact_id: str) -> str:
    """One message per contact per campaign, whoever queues it and however often."""
    return derived_id("msg", campaign_id, contact_id)


class Sending:
    def __init__(self, campaigns: CampaignStore, audience: AudienceStore, outbox, settings: Settings, owner: str):
        self.campaigns, self.audience, self.outbox, self.settings, self.owner = (
            campaigns, audience, outbox, settings, owner)

    # ------------------------------------------------------------------ scheduling, queueing
    def run_due(self, now: datetime) -> int:
        """Start scheduled campaigns whose time came; queue those whose queueing is free."""
        done = 0
        for campaign in self.campaigns.due(now):
            if campaign["state"] == D.SCHEDULED and (campaign.get("schedule_at") or now) <= now:
                try:
                    self.campaigns.transition(campaign["_id"], campaign["version"], {
                        "state": D.RUNNING, "queue": {"state": "pending", "lease": None}, "due_at": now})
                except VersionConflict:
                    continue
                campaign = self.campaigns.get(campaign["_id"])
            if campaign["state"] == D.RUNNING and (campaign.get("queue") or {}).get("state") == "pending":
                if self.campaigns.take_queueing(campaign, self.owner, QUEUE_LEASE, now):
                    self.queue(self.campaigns.get(campaign["_id"]))
                    done += 1
        return done

    def queue(self, campaign: dict[str, Any]) -> None:
        """The audience as messages (queued, or skipped with the reason known now) in batches."""
        started = time.perf_counter()
        now = clock.now()
        cid, channel, size = campaign["_id"], campaign["channel"], self.settings.batch_size
        found, excluded = recipients(self.audience, campaign)
        self.campaigns.batches.delete_many({"campaign_id": cid, "state": "held"})   # of a queueing that crashed
        messages, batches = [], []
        for i, c in enumerate(found):
            n = i // size
            decision = D.decide(D.Recipient.of_facts(c.contact_id, c.facts, channel), channel, now,
                                quiet=self.settings.quiet_hours, default_tz=self.settings.default_tz)
            skipped = decision.action == "skip"
            msg = {"_id": message_id(cid, c.contact_id), "campaign_id": cid, "contact_id": c.contact_id,
                   "channel": channel, "batch": n, "status": D.SKIPPED if skipped else D.QUEUED,
                   "reason": decision.reason if skipped else "", "detail": decision.detail if skipped else "",
                   "attempts": 0, "opened_at": None, "unsubscribed_at": None, "replied_at": None, "clicks": {},
                   "created_at": now, "updated_at": now}
            messages.append(msg)
            if n == len(batches):
                batches.append({"_id": batch_id(cid, n), "campaign_id": cid, "n": n, "messages": [], "state": "held",
                                "due_at": None, "lease": None, "counts": {}})
            batches[n]["messages"].append(msg["_id"])
            _count(batches[n]["counts"], msg)
            if skipped:
                MESSAGES_TOTAL.labels(channel, D.SKIPPED, decision.reason).inc()
        for start in range(0, len(messages), INSERT_CHUNK):
            self.campaigns.insert_messages(messages[start:start + INSERT_CHUNK])
        self.campaigns.insert_batches(batches)
        self.campaigns.release_batches(cid, now)
        current = self.campaigns.get(cid)
        event = CampaignStarted(campaign_id=cid, name=campaign["name"], channel=channel, recipients=len(messages),
                                started_at=now)
        staged = self.outbox.announce(event, event_id=derived_id("evt", "campaign_started", cid))
        self.campaigns.transition(cid, current["version"], {
            "queue.state": "done", "queue.lease": None, "queue.seconds": round(time.perf_counter() - started, 3),
            "recipients": len(messages), "excluded": excluded, "batches": len(batches), "started_at": now,
            "due_at": None}, staged)
        self.outbox.publish(self.campaigns.campaigns, cid, staged)
        log.info("campaign %s queued %d messages in %d batches (%.1f s)", cid, len(messages), len(batches),
                 time.perf_counter() - started)
        if not batches:
            self.complete_if_done(cid)

    # ------------------------------------------------------------------ delivery
    def deliver(self, seconds: float = TICK_SECONDS) -> int:
        """Work through due batches for up to ``seconds``, ``send_concurrency`` of them at
        once (a message waits on the database and the server far more than it computes);
        returns the batches handled, once every one of them is done."""
        deadline, lanes = time.monotonic() + seconds, self.settings.send_concurrency
        return sum(eventlet.GreenPool(lanes).imap(lambda _: self._deliver_until(deadline), range(lanes)))

    def _deliver_until(self, deadline: float) -> int:
        handled = 0
        while time.monotonic() < deadline:
            batch = self.campaigns.take_batch(self.owner, BATCH_LEASE, clock.now())
            if batch is None:
                break
            try:
                self.deliver_batch(batch)
            except Exception:   # noqa: BLE001 - its lease runs out, then a replica takes it again
                log.exception("batch %s of campaign %s stopped; taken again when its lease runs out",
                              batch["_id"], batch["campaign_id"])
            handled += 1
        return handled

    def deliver_batch(self, batch: dict[str, Any]) -> None:
        campaign = self.campaigns.get(batch["campaign_id"])
        messages = self.campaigns.batch_messages(batch)
        live = [m["contact_id"] for m in messages if m["status"] not in D.FINAL]
        states = self.audience.get_many(live)
        caps = self.campaigns.sends_of(live) if self.settings.cap_messages else {}
        due_next: datetime | None = None
        with self._session(campaign["channel"]) as session:
            for done, m in enumerate(messages, 1):
                if m["status"] in D.FINAL:
                    continue
                later = self._one(campaign, m, states.get(m["contact_id"]) or {}, caps, session)
                if later is not None:
                    due_next = later if due_next is None else min(due_next, later)
                if done % PROGRESS_EVERY == 0:    # progress is readable while a batch runs
                    batch = self.campaigns.batch_progress(batch, self.owner, _counts(messages))
        self.campaigns.finish_batch(batch, self.owner, _counts(messages), due_next)
        if due_next is None:
            self.complete_if_done(campaign["_id"])

    def _one(self, campaign: dict[str, Any], m: dict[str, Any], state: dict[str, Any], caps: dict[str, Any],
             session) -> datetime | None:
        """One message: what happens to it now; returns when to look at it again, if ever."""
        now, channel = clock.now(), campaign["channel"]
        if m["status"] == D.SENDING:
            if (m.get("claimed_at") or now) > now - BATCH_LEASE:
                return now + BATCH_LEASE   # its worker may still be on it
            self._fail(campaign, m, D.FAILED, "interrupted: the worker stopped mid-send; never sent twice")
            return None
        if campaign["state"] == D.CANCELLED:
            self._settle(m, D.SKIPPED, D.CANCELLED_REASON, "the campaign was cancelled")
            return None
        if m["status"] == D.DEFERRED and m.get("not_before") and m["not_before"] > now:
            return m["not_before"]
        record = caps.get(m["contact_id"])
        sent = len(D.sends_in_window((record or {}).get("sends") or {}, now, self.settings.cap_window))
        decision = D.decide(D.Recipient.of_state(m["contact_id"], state, channel), channel, now,
                            quiet=self.settings.quiet_hours, default_tz=self.settings.default_tz,
                            sent_in_window=sent, cap=self.settings.cap_messages)
        if decision.action == "skip":
            self._settle(m, D.SKIPPED, decision.reason, decision.detail)
            return None
        if decision.action == "defer":
            self._settle(m, D.DEFERRED, decision.reason, decision.detail, not_before=decision.not_before)
            return decision.not_before
        return self._send(campaign, m, state, decision.address, record, caps, now, session)

    def _send(self, campaign, m, state, address, record, caps, now, session) -> datetime | None:
        cost = (campaign.get("cost_per_message") or {}).get("amount_minor") or 0
        budget = campaign.get("budget")
        if budget and cost and not self.campaigns.reserve_budget(campaign["_id"], budget["amount_minor"], cost):
            self._settle(m, D.SKIPPED, D.BUDGET, "the budget is spent")
            return None
        capped = bool(self.settings.cap_messages)
        if capped:
            try:
                self.campaigns.reserve_send(m["contact_id"], record, m["_id"], now, self.settings.cap_window)
            except VersionConflict:   # another send to this contact got in first: decide again with it
                self._refund(campaign, cost)
                caps.update(self.campaigns.sends_of([m["contact_id"]]))
                return self._one(campaign, m, state, caps, session)
        if not self.campaigns.claim(m["_id"], m["status"], self.owner, now):
            self._release(campaign, m, cost, capped)
            m["status"] = self.campaigns.message(m["_id"])["status"]
            return None
        m["status"] = D.SENDING
        tries = [0]
        try:
            self._deliver(campaign, m, state, address, session, tries)
        except DeliveryError as exc:
            self._release(campaign, m, cost, capped)
            status = D.BOUNCED if exc.permanent else D.FAILED
            self._fail(campaign, m, status, str(exc)[:500], attempts=tries[0])
            return None
        except CrmError as exc:     # the template failed for this contact's values
            self._release(campaign, m, cost, capped)
            self._fail(campaign, m, D.FAILED, f"template: {exc}"[:500], attempts=tries[0])
            return None
        sent_at = clock.now()
        event = MessageSent(contact_id=m["contact_id"], message_id=m["_id"], campaign_id=campaign["_id"],
                            campaign_name=campaign["name"], channel=campaign["channel"], at=sent_at)
        staged = self.outbox.announce(event, event_id=derived_id("evt", "message_sent", m["_id"]))
        self.campaigns.settle(m["_id"], D.SENDING, {"status": D.SENT, "sent_at": sent_at, "address": address,
                                                    "cost_minor": cost, "attempts": tries[0], "updated_at": sent_at},
                              staged)
        self.outbox.publish(self.campaigns.messages, m["_id"], staged)
        m["status"] = D.SENT
        MESSAGES_TOTAL.labels(campaign["channel"], D.SENT, "").inc()
        return None

    def _deliver(self, campaign, m, state, address, session, tries: list[int]) -> None:
        """Render and hand over, retrying transient failures with backoff (``tries[0]``
        counts the attempts)."""
        s = self.settings
        unsubscribe = tokens.url(s.tracking_url, s.tracking_secret, "u", m["_id"])
        values = templates.variables(state, campaign.get("defaults") or {}, {"campaign": campaign["name"]})
        if campaign["channel"] == "email":
            mail = templates.email(campaign["content"], values, unsubscribe_url=unsubscribe,
                                   track=lambda link: tokens.url(s.tracking_url, s.tracking_secret, "c", m["_id"], link),
                                   pixel_url=tokens.url(s.tracking_url, s.tracking_secret, "o", m["_id"]))
            message = smtp.build(sender=s.email_from, to=address, subject=mail.subject, text=mail.text, html=mail.html,
                                 message_id=m["_id"], campaign_id=campaign["_id"], unsubscribe_url=unsubscribe)
            self._retrying(lambda: session.send(message), tries)
        else:
            text = templates.sms(campaign["content"], values, unsubscribe_url=unsubscribe)
            provider = SmsProvider(s.sms_url, s.sms_token, s.sms_sender, s.send_timeout)
            self._retrying(lambda: provider.send(to=address, text=text, reference=m["_id"]), tries)

    def _retrying(self, send, tries: list[int]) -> None:
        for attempt in Retrying(stop=stop_after_attempt(self.settings.send_retries), reraise=True,
                                wait=wait_exponential(multiplier=self.settings.retry_wait, max=30),
                                retry=retry_if_exception_type(Transient)):
            with attempt:
                tries[0] += 1
                send()

    @contextmanager
    def _session(self, channel: str) -> Iterator[Any]:
        if channel == "email":
            with smtp.SmtpServer(self.settings.smtp_url, self.settings.send_timeout).session() as session:
                yield session
        else:
            with nullcontext(None) as nothing:
                yield nothing

    # ------------------------------------------------------------------ outcomes
    def _settle(self, m: dict[str, Any], status: str, reason: str, detail: str, *,
                not_before: datetime | None = None) -> None:
        now = clock.now()
        sets = {"status": status, "reason": reason, "detail": detail, "updated_at": now, "not_before": not_before}
        if self.campaigns.settle(m["_id"], m["status"], sets):
            m.update(sets)
            MESSAGES_TOTAL.labels(m["channel"], status, reason).inc()
        else:
            m["status"] = self.campaigns.message(m["_id"])["status"]

    def _fail(self, campaign, m, status: str, reason: str, *, attempts: int = 0) -> None:
        now = clock.now()
        event = MessageFailed(contact_id=m["contact_id"], message_id=m["_id"], campaign_id=campaign["_id"],
                              campaign_name=campaign["name"], channel=campaign["channel"], at=now, status=status,
                              reason=reason)
        staged = self.outbox.announce(event, event_id=derived_id("evt", "message_failed", m["_id"]))
        sets = {"status": status, "reason": status, "detail": reason, "updated_at": now}
        if attempts:
            sets["attempts"] = attempts
        if self.campaigns.settle(m["_id"], D.SENDING, sets, staged):
            self.outbox.publish(self.campaigns.messages, m["_id"], staged)
            m.update(status=status, reason=status, detail=reason)
            MESSAGES_TOTAL.labels(campaign["channel"], status, "").inc()

    def _release(self, campaign, m, cost: int, capped: bool) -> None:
        self._refund(campaign, cost)
        if capped:
            self.campaigns.release_send(m["contact_id"], m["_id"])

    def _refund(self, campaign, cost: int) -> None:
        if campaign.get("budget") and cost:
            self.campaigns.refund_budget(campaign["_id"], cost)

    # ------------------------------------------------------------------ completion
    def complete_if_done(self, campaign_id: str) -> None:
        totals, open_batches = self.campaigns.batch_counts(campaign_id)
        campaign = self.campaigns.get(campaign_id)
        if open_batches or campaign["state"] not in (D.RUNNING, D.CANCELLED) or campaign.get("completed_at") or \
                (campaign["state"] == D.RUNNING and (campaign.get("queue") or {}).get("state") != "done"):
            return
        now = clock.now()
        state = D.COMPLETED if campaign["state"] == D.RUNNING else D.CANCELLED
        event = CampaignCompleted(campaign_id=campaign_id, name=campaign["name"], channel=campaign["channel"],
                                  state=state, progress=progress_of(campaign, totals), completed_at=now)
        staged = self.outbox.announce(event, event_id=derived_id("evt", "campaign_completed", campaign_id))
        try:
            self.campaigns.transition(campaign_id, campaign["version"], {"state": state, "completed_at": now,
                                                                         "due_at": None}, staged)
        except VersionConflict:
            return    # another worker finished it, or it changed: the next batch or tick decides
        self.outbox.publish(self.campaigns.campaigns, campaign_id, staged)


def _counts(messages: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for m in messages:
        _count(counts, m)
    return counts


def _count(counts: dict[str, Any], m: dict[str, Any]) -> None:
    status = m["status"]
    if status == D.SKIPPED:
        bucket = counts.setdefault("skipped", {})
        bucket[m.get("reason") or "other"] = bucket.get(m.get("reason") or "other", 0) + 1
    else:
        counts[status] = counts.get(status, 0) + 1
        if status == D.DEFERRED:
            bucket = counts.setdefault("deferred_by", {})
            bucket[m.get("reason") or "other"] = bucket.get(m.get("reason") or "other", 0) + 1


def progress_of(campaign: dict[str, Any], totals: dict[str, Any]) -> dict[str, Any]:
    """The progress a client reads: the batches' counts, what the exclusions removed, what
    the budget spent."""
    out = D.progress({**totals, "recipients": campaign.get("recipients") or 0})
    out["excluded"] = int(campaign.get("excluded") or 0)
    out["spent_minor"] = int(campaign.get("spent_minor") or 0)
    return out

