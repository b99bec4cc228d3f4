"""Persistence of the service desk: one repository per area over the service's own
database, every index declared through :meth:`ServiceDeskStore.ensure_indexes`."""
from __future__ import annotations

from pymongo.database import Database

from .bot.store import BotStore
from .customers import CustomerStore
from .kb.store import KbStore
from .sla.store import ConfigStore
from .tickets.store import TicketStore


class ServiceDeskStore:
    def __init__(self, db: Database):
        self.db = db
        self.tickets = TicketStore(db)
        self.config = ConfigStore(db)
        self.kb = KbStore(db)
        self.bot = BotStore(db)
        self.customers = CustomerStore(db)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        for area in (TicketStore, ConfigStore, KbStore, BotStore):
            area.ensure_indexes(db)
