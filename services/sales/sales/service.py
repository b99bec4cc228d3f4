"""The sales nameko service: leads, deals, activities, orders (being built: issue 10)."""
from __future__ import annotations

from crm_common.nameko.base import CrmService
from crm_common.nameko.mongo import MongoStore

from .store import SalesStore


class SalesService(CrmService):
    name = "sales"
    store = MongoStore(SalesStore)
