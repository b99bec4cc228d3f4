"""The marketing nameko service: its entrypoints, one mixin per area (each area is a
subpackage with its contracts, rules, store and views):

* ``audience``   the read model of every contact, built only from events (handlers), and
                 what marketing knows of one contact (GetAudienceProfile, surveys)
* ``segments``   static lists and dynamic segments whose members follow the events, the
                 rule language, previews, and the timers that fill and re-check segments
* ``campaigns``  email and SMS campaigns: dry run, send, progress; the sending timers
* ``engagement`` opens, clicks, unsubscribes, bounces and replies; scoring and the lead
                 handoff to sales
"""
from __future__ import annotations

from crm_common.nameko.base import CrmService
from crm_common.nameko.mongo import MongoStore

from .audience.entrypoints import AudienceEntrypoints
from .audience.store import AUDIENCE
from .campaigns.entrypoints import CampaignEntrypoints
from .campaigns.store import CAMPAIGNS, MESSAGES, SENDS
from .engagement.entrypoints import EngagementEntrypoints
from .segments.entrypoints import SegmentEntrypoints
from .segments.store import LISTS, SEGMENTS
from .store import MarketingStore


class MarketingService(AudienceEntrypoints, SegmentEntrypoints, CampaignEntrypoints, EngagementEntrypoints,
                       CrmService):
    name = "marketing"
    OUTBOX_COLLECTIONS = (AUDIENCE, SEGMENTS, CAMPAIGNS, MESSAGES)
    PERSONAL_DATA = {"audience_profile": (AUDIENCE, "_id"), "messages": (MESSAGES, "contact_id"),
                     "recent_sends": (SENDS, "_id"), "static_lists": (LISTS, "contact_id")}
    store = MongoStore(MarketingStore)

    def before_relay(self):
        """Pages a crash left behind their audience document are written first."""
        writes = self.writes()
        for doc in self.store.audience.leftovers():
            writes.repage(doc)
