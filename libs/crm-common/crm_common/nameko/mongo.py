"""MongoDB as a nameko dependency: one MongoClient per service container (process),
the service's own database, indexes ensured at start-up, closed on stop."""
from __future__ import annotations

from typing import Any, Callable

from nameko.extensions import DependencyProvider
import pymongo
from pymongo import MongoClient
from pymongo.database import Database

from .. import audit, config, probes
from . import idempotency
from .handlers import HANDLED

PROBE_TIMEOUT_SECONDS = 2


class MongoStore(DependencyProvider):
    """Injects ``store_factory(db)`` into each worker.

    ``store_factory`` is the service's repository class; it may define a
    ``ensure_indexes(db)`` classmethod, called once at start-up.
    Config keys (YAML or env): ``MONGODB_URL``, ``MONGODB_DATABASE``.
    Registers the readiness check that the database answers a ping.
    """

    def __init__(self, store_factory: Callable[[Database], Any]):
        self.store_factory = store_factory
        self.client: MongoClient | None = None
        self.db: Database | None = None

    def setup(self) -> None:
        cfg = self.container.config
        url = cfg.get("MONGODB_URL") or config.mongodb_url()
        name = cfg.get("MONGODB_DATABASE") or config.database_name(self.container.service_name)
        self.client = MongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000,
                                  appname=self.container.service_name)
        self.db = self.client[name]
        ensure = getattr(self.store_factory, "ensure_indexes", None)
        if ensure:
            ensure(self.db)
        self.db[HANDLED].create_index("handled_at")  # for pruning (crm_common.nameko.handlers)
        idempotency.ensure_indexes(self.db)
        audit.ensure_indexes(self.db)
        self._check_name = f"{self.container.service_name}.database"
        probes.add_check(self._check_name, self._ping)

    def _ping(self) -> None:
        with pymongo.timeout(PROBE_TIMEOUT_SECONDS):
            self.db.command("ping")

    def stop(self) -> None:
        probes.remove_check(getattr(self, "_check_name", ""))
        if self.client is not None:
            self.client.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.store_factory(self.db)
