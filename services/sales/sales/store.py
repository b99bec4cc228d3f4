"""Persistence of the sales service: one repository per area, indexes declared in one place."""
from __future__ import annotations

from pymongo.database import Database


class SalesStore:
    def __init__(self, db: Database):
        self.db = db

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        """Every index of the service."""
