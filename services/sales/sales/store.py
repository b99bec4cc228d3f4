"""Persistence of the sales service: one repository per area (each module says what it
stores and why it is safe), composed here; every index is declared by its repository."""
from __future__ import annotations

from pymongo.database import Database

from .activities.store import ACTIVITIES, ActivityStore
from .deals.store import DEALS, PIPELINES, DealStore
from .known_contacts import KNOWN, POINTS, KnownContacts
from .leads.store import LEADS, SETTINGS, LeadStore
from .orders.store import ORDERS, SUMMARIES, OrderStore
from .team.store import REPS, TERRITORIES, TeamStore

#: The collections whose documents stage events or audit entries (the relay's round).
OUTBOX_COLLECTIONS = (LEADS, DEALS, ACTIVITIES, ORDERS, SUMMARIES, REPS, TERRITORIES, PIPELINES, SETTINGS)
#: What sales holds about a contact (crm_common.privacy). Leads count once linked to the
#: contact (converted, or captured with an email or phone the contact has).
PERSONAL_DATA = {"leads": (LEADS, "contact_id"), "deals": (DEALS, "contact_id"), "orders": (ORDERS, "contact_id"),
                 "purchase_summary": (SUMMARIES, "_id"), "activities": (ACTIVITIES, "contact_id"),
                 "contact_copy": (KNOWN, "_id"), "contact_points": (POINTS, "contact_id")}


class SalesStore:
    def __init__(self, db: Database):
        self.db = db
        self.team = TeamStore(db)
        self.leads = LeadStore(db)
        self.deals = DealStore(db)
        self.activities = ActivityStore(db)
        self.orders = OrderStore(db)
        self.contacts = KnownContacts(db)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        for repository in (TeamStore, LeadStore, DealStore, ActivityStore, OrderStore, KnownContacts):
            repository.ensure_indexes(db)
