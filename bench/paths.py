"""The product paths through the gateway, and the data they need.

get/search/log need existing contacts; earn/redeem need active members with points.
:func:`seed` creates them through the gateway (consenting contacts, enrolled by the
event pipeline, then one large purchase each so redemptions never run dry).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import grpc

from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc

from . import credentials
from .load import GrpcCall

CONTACTS = ("crm.v1.ContactsService", "crm/v1/contacts.proto")
LOYALTY = ("crm.v1.LoyaltyService", "crm/v1/loyalty.proto")


@dataclass
class Seed:
    run: str                 # unique per run: keeps this run's data apart
    contact_ids: list[str]   # consenting contacts, enrolled, each holding plenty of points
    family_name: str         # what search looks for


@dataclass
class Path:
    name: str
    kind: str        # "read" or "write": the targets differ
    call: GrpcCall


def seed(addr: str, count: int = 64, timeout: float = 120) -> Seed:
    run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    family = f"Bench{run.replace('-', '')}"
    with credentials.channel(addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=15)
        contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
        loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        ids = []
        for i in range(count):
            contact = contacts_pb2.Contact(given_name=f"Seed{i}", family_name=family,
                                           emails=[contacts_pb2.Email(address=f"seed{i}.{run}@bench.example")],
                                           lifecycle_stage="customer", tags=["bench"])
            contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="bench"))
            ids.append(contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10).id)
        deadline = time.monotonic() + timeout
        for i, contact_id in enumerate(ids):
            while True:  # enrolment follows the contact_created event
                try:
                    loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact_id), timeout=10)
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(
                contact_id=contact_id, source="bench-seed", source_ref=f"{run}-{i}",
                amount=common_pb2.Money(amount_minor=10**11, currency="EUR")), timeout=10)
    return Seed(run, ids, family)


def paths(addr: str, s: Seed) -> list[Path]:
    """Reads first: the writes grow the collections that FerretDB scans."""
    def call(api, method, data) -> GrpcCall:
        service, proto = api
        return GrpcCall(f"{service}.{method}", proto, data, addr)

    by_id = [{"contact_id": c} for c in s.contact_ids]
    return [
        Path("get contact", "read", call(CONTACTS, "GetContact", by_id)),
        Path("search contacts", "read", call(CONTACTS, "SearchContacts",
                                             {"text": s.family_name.lower(), "page_size": 10})),
        Path("create contact", "write", call(CONTACTS, "CreateContact", {"contact": {
            "given_name": "Load", "family_name": f"Created {s.run}", "lifecycle_stage": "lead",
            "emails": [{"address": "c{{.RequestNumber}}.{{newUUID}}@bench.example"}]}})),
        Path("log interaction", "write", call(CONTACTS, "LogInteraction", [
            dict(d, channel="phone", direction="outbound", summary="Benchmark call {{.RequestNumber}}")
            for d in by_id])),
        Path("earn points", "write", call(LOYALTY, "EarnPoints", [
            dict(d, source="bench", source_ref=f"{s.run}-{{{{newUUID}}}}",
                 amount={"amount_minor": 1999, "currency": "EUR"}) for d in by_id])),
        Path("redeem points", "write", call(LOYALTY, "RedeemPoints", [
            dict(d, points=1, reason="Benchmark voucher", idempotency_key=f"{s.run}-{{{{newUUID}}}}")
            for d in by_id])),
    ]
