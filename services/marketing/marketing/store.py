"""The service's database: one repository per area, every index declared by its area."""
from __future__ import annotations

from pymongo.database import Database

from .audience.store import AudienceStore
from .campaigns.store import CampaignStore
from .segments.store import SegmentStore


class MarketingStore:
    def __init__(self, db: Database):
        self.db = db
        self.audience = AudienceStore(db)
        self.segments = SegmentStore(db)
        self.campaigns = CampaignStore(db)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        AudienceStore.ensure_indexes(db)
        SegmentStore.ensure_indexes(db)
        CampaignStore.ensure_indexes(db)
