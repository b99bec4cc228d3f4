"""The sales paths through the gateway (issue 10), and the order -> points pipeline.

- create lead: a new person per request (web form, scored and assigned by the rules);
- move deal: deals seeded here, each moved between stages, the requests for one deal far
  apart in the sequence so 32 in flight never race for one deal;
- place order: a new external reference per request, for the seeded members;
- order -> points: orders placed and paid as fast as the gateway takes them (then paced
  at 70 % of the rate that pass reached), and the time until loyalty's ``points_earned``
  for each order is out (lag = points heard - PlaceOrder sent).
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc

from crm.v1 import common_pb2, sales_pb2, sales_pb2_grpc

from . import credentials, pipeline, procs
from .cpu import CpuWindow
from .load import GrpcCall
from .paths import Path

SALES = ("crm.v1.SalesService", "crm/v1/sales.proto")
DEALS = 200
STAGES = ("proposal", "negotiation")


def seed_deals(addr: str, contact_ids: list[str], count: int = DEALS) -> list[str]:
    with credentials.channel(addr) as channel:
        stub = sales_pb2_grpc.SalesServiceStub(channel)
        return [stub.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
            name=f"Bench deal {i}", contact_id=contact_ids[i % len(contact_ids)],
            amount=common_pb2.Money(amount_minor=100_000, currency="EUR"))), timeout=10).id for i in range(count)]


def paths(addr: str, run: str, contact_ids: list[str], deal_ids: list[str]) -> list[Path]:
    def call(method, data) -> GrpcCall:
        service, proto = SALES
        return GrpcCall(f"{service}.{method}", proto, data, addr)

    moves = [{"deal_id": d, "stage_id": stage} for stage in STAGES for d in deal_ids]
    line = {"sku": "BENCH-1", "name": "Bench item", "quantity": 2, "unit_price": {"amount_minor": 1250,
                                                                                 "currency": "EUR"}}
    return [
        Path("create lead", "write", call("CaptureLead", {
            "lead": {"given_name": "Load", "family_name": f"Lead {run}", "email": "l{{.RequestNumber}}.{{newUUID}}@bench.example",
                     "country": "DE", "company_name": "Bench GmbH", "company_size": 120},
            "channel": "web_form", "attribution": {"source": "bench"}})),
        Path("move deal", "write", call("MoveDeal", moves)),
        Path("place order", "write", call("PlaceOrder", [
            {"contact_id": c, "external_ref": f"{run}-{{{{newUUID}}}}", "channel": "web", "currency": "EUR",
             "lines": [line]} for c in contact_ids])),
    ]


async def place_and_pay(addr: str, contact_ids: list[str], n: int, in_flight: int, rate: float | None) -> list[dict]:
    tag = uuid.uuid4().hex[:10]
    records: list[dict] = []
    next_index = iter(range(n))
    async with credentials.aio_channel(addr) as channel:
        stub = sales_pb2_grpc.SalesServiceStub(channel)
        start = time.monotonic()

        async def worker() -> None:
            for i in next_index:
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                sent = time.monotonic()
                try:
                    order = await stub.PlaceOrder(sales_pb2.PlaceOrderRequest(
                        contact_id=contact_ids[i % len(contact_ids)], external_ref=f"pipe-{tag}-{i}", channel="web",
                        currency="EUR", lines=[sales_pb2.OrderLine(sku="PIPE-1", name="Pipeline item", quantity=1,
                                                                   unit_price=common_pb2.Money(amount_minor=4_999,
                                                                                               currency="EUR"))]),
                        timeout=10)
                    await stub.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id), timeout=10)
                    records.append({"id": order.id, "sent": sent, "acked": time.monotonic()})
                except grpc.aio.AioRpcError as exc:
                    records.append({"id": None, "sent": sent, "error": exc.code().name})

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return records


def order_points(addr: str, amqp_uri: str, contact_ids: list[str], n: int, in_flight: int, rate: float | None,
                 pids: dict[str, int]) -> dict:
    """One pass: ``n`` orders placed and paid for members; the lag until each one's points."""
    timeout = 120 + (3 * n / rate if rate else n)
    cmd = pipeline.listener(amqp_uri, n, timeout, "loyalty.events", "points_earned", "data.entry.source_ref")
    with procs.helper(cmd) as child:
        window = CpuWindow({**pids, "listener": child.pid})
        records = asyncio.run(place_and_pay(addr, contact_ids, n, in_flight, rate))
        out, _ = child.communicate(timeout=timeout + 30)
        cpu = window.stop()
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the points_earned listener died (exit {child.returncode})")
    heard = json.loads(lines[-1])
    row = pipeline.summarize(records, heard["heard"], rate, cpu)
    if heard["error"]:
        row["error_kinds"]["listener"] = heard["error"]
    # the same figures, named for orders: paid/s and points/s
    row["orders"], row["paid_rps"], row["points_rps"] = row.pop("contacts"), row.pop("create_rps"), row.pop("enroll_rps")
    if "not enrolled in time" in row["error_kinds"]:
        row["error_kinds"]["no points in time"] = row["error_kinds"].pop("not enrolled in time")
    return row
