"""The bot's rules, pure: does the customer ask for a person, is the best article good
enough, and what the bot says (in Persian or English).

It answers from the knowledge base when its confidence (service_desk.kb.search.confidence:
the share of the question's information the best published article covers) is at least
``SERVICE_DESK_BOT_CONFIDENCE`` (0.6 by default: most of what the question asks, its
rarest words included). Otherwise, or when the customer asks for a person, it hands the
conversation over: a ticket on channel ``bot`` with the transcript, and tells the
customer so. A conversation handed over stays with the ticket: what the customer writes
next is added to it as their reply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from crm_common.text import fold

ANSWERED, HANDOFF_UNSURE, HANDOFF_ASKED, HANDED_OFF = "answered", "handoff_unsure", "handoff_asked", "handed_off"
OUTCOMES = (ANSWERED, HANDOFF_UNSURE, HANDOFF_ASKED, HANDED_OFF)
MAX_TURNS = 100          # a conversation's transcript is bounded: then it is handed over
SUBJECT_MAX = 120

# What people write when they want a human, folded (crm_common.text.fold) like the message.
_PERSON = [re.compile(p) for p in (
    r"\b(human|person|real person|someone|somebody|agent|operator|representative|staff|support team)\b",
    r"\b(talk|speak|chat)\s+(to|with)\s+(a|an|the|someone|somebody|your)\b",
    r"\bcall me\b|\bcustomer (service|support)\b",
    r"(اپراتور|کارشناس|پشتیبان|انسان|ادم واقعی|یک ادم|شخص|همکار|مسیول)",
    r"(صحبت|حرف|تماس|گفتگو)\s+(با|بزنم|بگیرم)",
    r"(وصل|ارتباط)\s*(کن|کنید|بده|بدید|شوم|بشم)",
)]
_ARABIC_SCRIPT = re.compile(r"[\u0600-\u06ff]")


def wants_person(text: str) -> bool:
    """The customer asks for a human (English or Persian phrasings)."""
    folded = fold(text)
    return any(p.search(folded) for p in _PERSON)


def persian(locale: str | None, text: str) -> bool:
    if locale:
        return locale.split("-")[0] in ("fa", "ar")
    return bool(_ARABIC_SCRIPT.search(text))


@dataclass(frozen=True)
class Decision:
    outcome: str             # answered | handoff_unsure | handoff_asked
    confidence: float

    @property
    def handoff(self) -> bool:
        return self.outcome != ANSWERED


def decide(question: str, confidence: float, threshold: float, turns: int) -> Decision:
    if wants_person(question):
        return Decision(HANDOFF_ASKED, confidence)
    if confidence < threshold or turns >= MAX_TURNS:
        return Decision(HANDOFF_UNSURE, confidence)
    return Decision(ANSWERED, confidence)


def answer_text(titles: list[str], snippet: str, fa: bool) -> str:
    if fa:
        return f"این مقاله به پرسش شما پاسخ می‌دهد: «{titles[0]}». {snippet}"
    return f"This article answers your question: \"{titles[0]}\". {snippet}"


def handoff_text(ticket_id: str, outcome: str, fa: bool) -> str:
    if fa:
        why = "گفتگو را به یکی از همکارانم می‌سپارم" if outcome == HANDOFF_ASKED else \
            "پاسخ مطمئنی در راهنما پیدا نکردم و گفتگو را به یکی از همکارانم می‌سپارم"
        return f"{why}. درخواست شما با شماره {ticket_id} ثبت شد و به‌زودی پاسخ می‌گیرید."
    why = "I'm passing you to a colleague" if outcome == HANDOFF_ASKED else \
        "I couldn't find a sure answer in our help articles, so I'm passing you to a colleague"
    return f"{why}. Your request is ticket {ticket_id}; an agent will reply soon."


def handed_off_text(ticket_id: str, fa: bool) -> str:
    if fa:
        return f"پیام شما به درخواست {ticket_id} اضافه شد؛ همکارم پاسخ می‌دهد."
    return f"I've added your message to ticket {ticket_id}; an agent will reply there."


def subject_of(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= SUBJECT_MAX else line[:SUBJECT_MAX - 1].rstrip() + "…"


def transcript_text(turns: list[dict]) -> str:
    """The conversation as the handoff ticket's description."""
    return "\n".join(f"[{t['at']}] {t['role']}: {t['text']}" for t in turns)
