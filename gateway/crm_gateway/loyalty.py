"""crm.v1.LoyaltyService -> the loyalty service's RPCs (docs/rpc.md)."""
from __future__ import annotations

import re

from crm.v1 import loyalty_pb2, loyalty_pb2_grpc
from crm_common.validation import Violations

from . import convert
from .base import Call, Servicer, check, page_size, require, rpc_method

SERVICE = "loyalty"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class LoyaltyServicer(Servicer, loyalty_pb2_grpc.LoyaltyServiceServicer):
    default_service = SERVICE
    grpc_service = "crm.v1.LoyaltyService"

    @rpc_method
    async def Enroll(self, request: loyalty_pb2.EnrollRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        check(v)
        return convert.member_to_proto(await call(self.service, "enroll", contact_id=request.contact_id))

    @rpc_method
    async def GetMember(self, request: loyalty_pb2.GetMemberRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        check(v)
        return convert.member_to_proto(await call(self.service, "get_member", contact_id=request.contact_id))

    @rpc_method
    async def EarnPoints(self, request: loyalty_pb2.EarnPointsRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        require(v, request.source, "source")
        require(v, request.source_ref, "source_ref")
        if not request.HasField("amount"):
            v.add("amount", "is required")
        else:
            if request.amount.amount_minor <= 0:
                v.add("amount.amount_minor", "must be greater than zero")
            if not _CURRENCY.match(request.amount.currency):
                v.add("amount.currency", "must be an ISO 4217 code (three upper-case letters)")
        check(v)
        return convert.points_response_to_proto(await call(
            self.service, "earn_points", contact_id=request.contact_id, source=request.source,
            source_ref=request.source_ref, amount=convert.money_to_dict(request.amount)))

    @rpc_method
    async def RedeemPoints(self, request: loyalty_pb2.RedeemPointsRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        if request.points <= 0:
            v.add("points", "must be greater than 0")
        require(v, request.reason, "reason", max_len=1000)
        check(v)
        return convert.points_response_to_proto(await call(
            self.service, "redeem_points", contact_id=request.contact_id, points=request.points,
            reason=request.reason, request_id=request.request_id or None))

    @rpc_method
    async def ListLedger(self, request: loyalty_pb2.ListLedgerRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        page_size(v, request.page_size)
        check(v)
        res = await call(self.service, "list_ledger", contact_id=request.contact_id,
                         page_size=request.page_size or 50, page_token=request.page_token or None)
        out = loyalty_pb2.ListLedgerResponse(next_page_token=res.get("next_page_token") or "")
        for e in res.get("entries") or ():
            convert.ledger_entry_to_proto(e, out.entries.add())
        return out
