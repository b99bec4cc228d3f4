"""The service report RPC. Mixed into ServiceDeskService (service.py)."""
from __future__ import annotations

from crm_common import clock
from crm_common.errors import FailedPrecondition
from crm_common.nameko.base import rpc

from ..tickets.domain import ACTIVE
from . import contracts as C, domain

MAX_TICKETS = 200_000


class ReportEntrypoints:
    @rpc(C.GetServiceReport)
    def get_service_report(self, req: C.GetServiceReport):
        tickets = self.store.tickets.opened_between(req.since, req.until, req.group)
        if len(tickets) > MAX_TICKETS:
            raise FailedPrecondition(f"{len(tickets)} tickets in the period: ask for a shorter one",
                                     {"tickets": len(tickets)})
        counts = self.store.tickets.count_active(req.group)
        backlog = {s: sum(n for (status, _), n in counts.items() if status == s) for s in ACTIVE}
        return {"since": clock.to_iso(req.since), "until": clock.to_iso(req.until), "group": req.group or "",
                **domain.report(tickets, backlog)}
