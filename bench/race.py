"""Contention on one record: a member with 300 points and 1,000 racing 1-point
redemptions, 64 in flight (ghz, or a thread pool of gRPC clients without it). What it
proves: exactly 300 succeed and 700 are refused, the balance ends at 0 and the ledger sums
to it; what it times: the whole race, against the full hop's rate in the same run.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pymongo

from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc

from . import credentials
from .cpu import CpuWindow
from .load import GHZ
from .procs import ROOT

POINTS, REQUESTS, IN_FLIGHT = 300, 1000, 64


def member_with_points(addr: str, points: int) -> str:
    run = uuid.uuid4().hex[:10]
    with credentials.channel(addr) as channel:
        contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
        loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        contact = contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(
            given_name="Racer", family_name=run, emails=[contacts_pb2.Email(address=f"race.{run}@bench.example")])),
            timeout=10)
        loyalty.Enroll(loyalty_pb2.EnrollRequest(contact_id=contact.id), timeout=10)
        loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(
            contact_id=contact.id, source="bench-race", source_ref=run,
            amount=common_pb2.Money(amount_minor=points * 100, currency="EUR")), timeout=10)
    return contact.id


def _ghz(addr: str, contact_id: str) -> Counter:
    data = json.dumps({"contact_id": contact_id, "points": 1, "reason": "race"})
    done = subprocess.run([str(GHZ), "--insecure", *credentials.ghz_metadata(), "--proto", "crm/v1/loyalty.proto", "--import-paths",
                           str(ROOT / "proto"), "--call", "crm.v1.LoyaltyService.RedeemPoints", "-d", data,
                           "-n", str(REQUESTS), "-c", str(IN_FLIGHT), "--format", "json", addr],
                          capture_output=True, text=True, check=True)
    return Counter(json.loads(done.stdout).get("statusCodeDistribution", {}))


def _threads(addr: str, contact_id: str) -> Counter:
    with credentials.channel(addr) as channel:
        stub = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        request = loyalty_pb2.RedeemPointsRequest(contact_id=contact_id, points=1, reason="race")

        def one(_):
            try:
                stub.RedeemPoints(request, timeout=60)
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name.title().replace("_", "")

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            return Counter(pool.map(one, range(REQUESTS)))


def run(addr: str, mongodb_url: str, loyalty_db: str, pids: dict[str, int], tool: str) -> dict:
    contact_id = member_with_points(addr, POINTS)
    window = CpuWindow(pids)
    t0 = time.monotonic()
    codes = _ghz(addr, contact_id) if tool == "ghz" else _threads(addr, contact_id)
    seconds = time.monotonic() - t0
    cpu = window.stop()
    with pymongo.MongoClient(mongodb_url) as client:
        db = client[loyalty_db]
        balance = db.members.find_one({"_id": contact_id})["balance"]
        ledger = sum(e["points"] for e in db.ledger.find({"contact_id": contact_id}, {"points": 1}))
    return {"requests": REQUESTS, "in_flight": IN_FLIGHT, "points": POINTS, "seconds": round(seconds, 2),
            "ok": codes.get("OK", 0), "refused": codes.get("FailedPrecondition", 0),
            "other": sum(n for code, n in codes.items() if code not in ("OK", "FailedPrecondition")),
            "balance": balance, "ledger_sum": ledger, "cpu": cpu}
