"""The service desk's benchmark scenarios (registered in bench.run):

* **open ticket** and **reply to ticket** (a customer's reply, RecordCustomerReply: the
  benchmark calls as an integration, the customer portal) through the gateway (product
  paths, as ratios to the full-hop floor like every other path);
* **SLA timer**: with N open tickets in the database (10,000 by default), a few hundred
  of them falling due over some seconds, how late after its due instant each breach is
  published (p50/p99: the timer's interval plus its work), and that each is published
  once. The tickets are written straight into the service's database (made by the
  service's own domain functions, so they are what OpenTicket stores), which is what
  "10,000 open tickets" means without spending minutes opening them; they are removed
  afterwards.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Callable

import pika
import pymongo

from crm.v1 import service_desk_pb2 as sd, service_desk_pb2_grpc
from crm_common import clock
from crm_common.ids import new_id

from . import credentials, stats
from .load import GrpcCall
from .paths import Path, Seed

DESK = ("crm.v1.ServiceDeskService", "crm/v1/service_desk.proto")
SERVICE = "service-desk"


def paths(addr: str, seed: Seed) -> list[Path]:
    """Open a ticket for the seeded contacts; reply to tickets opened for them."""
    with credentials.channel(addr) as channel:
        desk = service_desk_pb2_grpc.ServiceDeskServiceStub(channel)
        tickets = [desk.OpenTicket(sd.OpenTicketRequest(
            contact_id=c, subject=f"Bench {seed.run}", description="Seeded for replies", category="question",
            priority="normal", channel="email"), timeout=10).id for c in seed.contact_ids]

    def call(method, data) -> GrpcCall:
        return GrpcCall(f"{DESK[0]}.{method}", DESK[1], data, addr)

    return [
        Path("open ticket", "write", call("OpenTicket", [
            {"contact_id": c, "subject": "Benchmark ticket {{.RequestNumber}}", "description": "Where is my order?",
             "category": "late_delivery", "priority": "normal", "channel": "web_form"} for c in seed.contact_ids])),
        # the benchmark calls as an integration (the customer portal): the customer's side of a reply
        Path("reply to ticket", "write", call("RecordCustomerReply", [
            {"ticket_id": t, "body": "Benchmark reply {{.RequestNumber}}"} for t in tickets])),
    ]


class EventTap:
    """Every event of ``exchange`` matching ``routing_key``, as delivered (duplicates
    included), heard on a private queue by a thread of its own. The end-to-end tests of
    the service desk listen with it too."""

    def __init__(self, amqp_uri: str, exchange: str = f"{SERVICE}.events", routing_key: str = "#"):
        self.seen: list[dict] = []
        self._stop = threading.Event()
        self._conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self._ch = self._conn.channel()
        self._ch.exchange_declare(exchange, "topic", durable=True)
        self._queue = self._ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self._ch.queue_bind(self._queue, exchange, routing_key=routing_key)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            method, _, body = self._ch.basic_get(self._queue, auto_ack=True)
            if method:
                self.seen.append(json.loads(body))
            else:
                self._conn.sleep(0.02)

    def of(self, subject: str, event_type: str) -> list[dict]:
        return [e for e in self.seen if e["subject"] == subject and e["type"] == event_type]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def _tickets(run: str, count: int, due: int, spread_s: float, lead_s: float) -> list[dict]:
    """``count`` open tickets: ``due`` of them fall due (first response) evenly over
    ``spread_s`` seconds starting ``lead_s`` from now, the rest in a month."""
    from service_desk.sla.calendar import Calendar
    from service_desk.sla.clocks import FIRST_RESPONSE, RESOLUTION, Clock, Sla
    from service_desk.tickets import domain

    always, now, target = Calendar.always_open(), clock.now(), 3600.0
    docs = []
    for i in range(count):
        due_at = now + timedelta(seconds=lead_s + spread_s * i / max(due - 1, 1)) if i < due else \
            now + timedelta(days=30)
        opened = due_at - timedelta(seconds=target)
        sla = Sla(policy_id="bench", warning_percent=99, clocks={
            FIRST_RESPONSE: Clock(target=target, running_since=opened).scheduled(always, 0.99),
            RESOLUTION: Clock(target=30 * 86400.0, running_since=opened).scheduled(always, 0.99)})
        ctx = domain.Ctx(now=opened, by="bench", cal=always)
        doc, _ = domain.new_ticket(new_id("tkt"), {
            "subject": f"Bench {run} {i}", "description": "", "category": "question", "priority": "normal",
            "channel": "email", "order_ref": None}, domain.Customer(f"con_bench{i}"), sla, "bench", "", "queued", ctx)
        docs.append({**doc, "bench_run": run})
    return docs


def sla_timer(amqp_uri: str, mongodb_url: str, database: str, say: Callable[[str], None], *,
              open_tickets: int = 10_000, due: int = 300, spread_s: float = 10.0) -> dict:
    run = f"sla-{uuid.uuid4().hex[:8]}"
    say(f"  SLA timer: {open_tickets} open tickets, {due} falling due over {spread_s:.0f} s")
    with pymongo.MongoClient(mongodb_url, tz_aware=True) as client:
        tickets = client[database]["tickets"]
        lead_s = 5.0 + open_tickets / 2000          # time to insert them before the first falls due
        docs = _tickets(run, open_tickets, due, spread_s, lead_s)
        due_ids = {d["_id"] for d in docs[:due]}
        tap = EventTap(amqp_uri, routing_key="ticket_sla_breached")
        try:
            for start in range(0, len(docs), 1000):
                tickets.insert_many(docs[start:start + 1000], ordered=False)
            deadline = time.monotonic() + lead_s + spread_s + 60
            while time.monotonic() < deadline and len({e["subject"] for e in tap.seen} & due_ids) < due:
                time.sleep(0.2)
            time.sleep(2)                           # room for a duplicate to show
        finally:
            tap.close()
            tickets.delete_many({"bench_run": run})
    mine = [e for e in tap.seen if e["subject"] in due_ids]
    late_ms = [(clock.from_iso(e["occurred_at"]) - clock.from_iso(e["data"]["due_at"])).total_seconds() * 1000
               for e in mine]
    ordered = sorted(late_ms)
    return {"open_tickets": open_tickets, "due": due, "breaches": len({e["subject"] for e in mine}),
            "duplicates": len(mine) - len({e["subject"] for e in mine}),
            "late_p50_ms": stats.percentile(ordered, 50) if ordered else 0.0,
            "late_p99_ms": stats.percentile(ordered, 99) if ordered else 0.0, "late_max_ms": max(ordered, default=0.0)}


def summary_line(r: dict) -> str:
    return (f"SLA timer with {r['open_tickets']} open tickets: {r['breaches']} of {r['due']} breaches published "
            f"{r['late_p50_ms']:.0f} ms (p50) / {r['late_p99_ms']:.0f} ms (p99) / {r['late_max_ms']:.0f} ms (max) "
            f"after their due instant; {r['duplicates']} duplicates")
