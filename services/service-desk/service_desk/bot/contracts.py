"""What the bot's RPCs accept."""
from __future__ import annotations

from crm_common.contracts import Command, Id, OptId, Paragraphs, Request

from ..kb.contracts import OptLocale

QUESTION_MAX = 2000


class AskBot(Command):
    """A customer's message to the bot; ``conversation_id`` "" starts a conversation."""

    conversation_id: OptId = None
    contact_id: Id
    question: Paragraphs(QUESTION_MAX, required=True)
    locale: OptLocale = None


class GetBotConversation(Request):
    conversation_id: Id
