"""The bot: answers from the knowledge base, hands over to a ticket when unsure or asked
for a person. Mixed into ServiceDeskService (service.py); its rules are bot.domain."""
from __future__ import annotations

from crm_common import clock
from crm_common.errors import FailedPrecondition, NotFound
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import rpc
from crm_common.retry import on_conflict

from .. import metrics
from ..tickets import domain as tickets
from ..views import conversation_view
from . import contracts as C, domain

BOT_RESULTS = 3


class BotEntrypoints:
    @rpc(C.AskBot)
    def ask_bot(self, req: C.AskBot):
        if self.store.customers.is_erased(req.contact_id):
            raise FailedPrecondition(f"contact {req.contact_id} was erased", {"contact_id": req.contact_id})
        return self._ask(req, req.conversation_id or new_id("bot"))

    @on_conflict()
    def _ask(self, req: C.AskBot, conversation_id: str):
        now = clock.now()
        conv = None
        if req.conversation_id:
            conv = self.store.bot.get(conversation_id)
            if conv["contact_id"] != req.contact_id:
                raise NotFound(f"bot conversation {conversation_id} not found", {"conversation_id": conversation_id})
        locale = req.locale or (conv or {}).get("locale")
        fa = domain.persian(locale, req.question)
        asked = {"role": "customer", "text": req.question, "at": now}
        new = {"_id": conversation_id, "contact_id": req.contact_id, "locale": locale, "status": "open"}

        if conv and conv.get("ticket_id"):                  # handed over already: the ticket takes it
            self._writes().apply(conv["ticket_id"], lambda t, ctx: tickets.customer_reply(
                t, new_id("msg"), req.question, ctx), "customer_reply")
            text = domain.handed_off_text(conv["ticket_id"], fa)
            conv = self.store.bot.append(conv, new, [asked, {"role": "bot", "text": text, "at": now}], now)
            metrics.BOT_REPLIES.labels(domain.HANDED_OFF).inc()
            return self._reply(conv, domain.HANDED_OFF, text, [], 0.0)

        hits, confidence = self._search(req.question, locale, False, BOT_RESULTS)
        decision = domain.decide(req.question, confidence if hits else 0.0, self.settings().bot_confidence,
                                 len((conv or {}).get("turns") or ()))
        metrics.BOT_REPLIES.labels(decision.outcome).inc()
        if not decision.handoff:
            text = domain.answer_text([h["article"]["title"] for h in hits], hits[0]["snippet"], fa)
            turn = {"role": "bot", "text": text, "at": now, "article_ids": [h["article"]["id"] for h in hits],
                    "confidence": confidence}
            conv = self.store.bot.append(conv, new, [asked, turn], now)
            return self._reply(conv, decision.outcome, text, hits, confidence)

        # hand over: a ticket with the transcript (its id derived from the conversation, so
        # a retry after a crash finds the same ticket), then the conversation points at it
        ticket_id = derived_id("tkt", conversation_id)
        transcript = [*((conv or {}).get("turns") or ()), asked]
        ticket = self._open(ticket_id, {
            "subject": domain.subject_of(req.question), "description": domain.transcript_text(
                [{**t, "at": clock.to_iso(t["at"])} for t in transcript]),
            "category": "question", "priority": "normal", "channel": "bot", "order_ref": None}, req.contact_id)
        text = domain.handoff_text(ticket["_id"], decision.outcome, fa)
        turn = {"role": "bot", "text": text, "at": now, "confidence": confidence}
        conv = self.store.bot.append(conv, new, [asked, turn], now, status="handed_off", ticket_id=ticket["_id"])
        return self._reply(conv, decision.outcome, text, hits, confidence)

    def _reply(self, conv, outcome: str, text: str, hits, confidence: float):
        return {"conversation_id": conv["_id"], "outcome": outcome, "text": text, "hits": hits,
                "confidence": confidence, "ticket_id": conv.get("ticket_id") or ""}

    @rpc(C.GetBotConversation)
    def get_bot_conversation(self, req: C.GetBotConversation):
        return conversation_view(self.store.bot.get(req.conversation_id))
