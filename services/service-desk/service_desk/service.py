"""The service-desk nameko service: tickets from every channel, SLAs by customer value on
business hours, a knowledge base and a bot that hands over to people, satisfaction and
reports. Its entrypoints live with their area and are mixed in here:

    tickets/entrypoints.py   open, read, converse, move, assign, rate
    sla/entrypoints.py       calendars, policies, groups, agents; the SLA timer
    kb/entrypoints.py        articles and search
    bot/entrypoints.py       the bot
    reports/entrypoints.py   the service report
    handlers.py              the customers' read model (contacts, loyalty, sales)

Rules are pure functions (tickets/domain.py, sla/, kb/search.py, bot/domain.py,
reports/domain.py); every ticket write goes through tickets/writes.py.
"""
from __future__ import annotations

from nameko.timer import timer

from crm_common.nameko.base import CrmService
from crm_common.nameko.mongo import MongoStore

from . import metrics
from .bot.entrypoints import BotEntrypoints
from .bot.store import CONVERSATIONS
from .customers import CUSTOMERS
from .handlers import ReadModelHandlers
from .kb.entrypoints import KbEntrypoints
from .kb.store import ARTICLES
from .reports.entrypoints import ReportEntrypoints
from .settings import Settings
from .sla.entrypoints import SlaEntrypoints
from .sla.store import CONFIG
from .store import ServiceDeskStore
from .tickets.domain import ACTIVE, PRIORITIES
from .tickets.entrypoints import TicketEntrypoints
from .tickets.store import MESSAGES, TICKETS

GAUGE_INTERVAL_SECONDS = 30


class ServiceDeskService(TicketEntrypoints, SlaEntrypoints, KbEntrypoints, BotEntrypoints, ReportEntrypoints,
                         ReadModelHandlers, CrmService):
    name = "service-desk"
    OUTBOX_COLLECTIONS = (TICKETS, ARTICLES, CONVERSATIONS, *CONFIG)
    PERSONAL_DATA = {"tickets": (TICKETS, "contact_id"), "ticket_messages": (MESSAGES, "contact_id"),
                     "bot_conversations": (CONVERSATIONS, "contact_id"), "customer": (CUSTOMERS, "_id")}
    store = MongoStore(ServiceDeskStore)

    def settings(self) -> Settings:
        return Settings.of(self.config)

    def before_relay(self):
        """Messages and article terms a crashed write left staged are stored first."""
        self.store.tickets.repair_messages()
        self.store.kb.repair_terms()

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        counts = self.store.tickets.count_active()
        for status in ACTIVE:
            for priority in PRIORITIES:
                metrics.TICKETS.labels(status, priority).set(counts.get((status, priority), 0))
        metrics.BREACHED_ACTIVE.set(self.store.tickets.count_breached_active())
        self.store.config.reconcile_loads(self.store.tickets.load_by_agent())
