"""The event pipeline: contacts created with loyalty consent, through the gateway, and
the time until loyalty has enrolled each one (its ``member_enrolled`` event is out).

    python -m bench.pipeline listen AMQP_URI EXPECT TIMEOUT

The listener (a child process, so its timestamps do not wait for the harness's
event loop) binds a private queue to ``loyalty.events`` for ``member_enrolled`` and
prints {contact_id: time} once it has heard EXPECT enrolments, or heard none for a
while, or TIMEOUT passed. Times are CLOCK_MONOTONIC, the same in every process.
Lag = enrolment heard - create request sent.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import grpc
import pika

from crm.v1 import contacts_pb2, contacts_pb2_grpc

from . import credentials, procs
from .cpu import CpuWindow
from .stats import percentile

EXCHANGE = "loyalty.events"        # nameko: <source service>.events, topic
EVENT = "member_enrolled"          # loyalty/events.py MEMBER_ENROLLED
IDLE_S = 10.0                      # nothing heard for this long after the last create: done


def listen(amqp_uri: str, expect: int, timeout: float, exchange: str = EXCHANGE, event: str = EVENT,
           key: str = "subject") -> dict:
    """{"heard": {key: time}, "error": why it stopped early, or None}. ``key`` is the
    dotted path in the envelope that names what was heard (the event's subject, or e.g.
    ``data.entry.source_ref``: the order a points_earned entry was for)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(queue, exchange, routing_key=event)
    heard: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    print("ready", flush=True)
    last, error = time.monotonic(), None
    try:
        for method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=0.5):
            now = time.monotonic()
            if method is not None:
                value = json.loads(body)
                for part in key.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if value is not None:
                    heard.setdefault(str(value), now)
                last = now
            if len(heard) >= expect or now > deadline or (heard and now - last > IDLE_S):
                break
        conn.close()
    except pika.exceptions.AMQPError as exc:  # e.g. the broker restarted under us
        error = f"listener lost the broker: {exc!r}"
    return {"heard": heard, "error": error}


async def create_consenting(addr: str, n: int, in_flight: int, rate: float | None) -> list[dict]:
    """Create ``n`` contacts consenting to the loyalty club, ``in_flight`` at a time, paced
    to ``rate`` per second when given (else as fast as the gateway takes them)."""
    tag = uuid.uuid4().hex[:10]
    records: list[dict] = []
    next_index = iter(range(n))
    async with credentials.aio_channel(addr) as channel:
        stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        start = time.monotonic()

        async def worker() -> None:
            for i in next_index:
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                contact = contacts_pb2.Contact(
                    given_name="Pipeline", family_name=f"Bench {tag}",
                    emails=[contacts_pb2.Email(address=f"p{i}.{tag}@bench.example")])
                contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="bench"))
                sent = time.monotonic()
                try:
                    reply = await stub.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10)
                    records.append({"id": reply.id, "sent": sent, "acked": time.monotonic()})
                except grpc.aio.AioRpcError as exc:
                    records.append({"id": None, "sent": sent, "error": exc.code().name})

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return records


def run(addr: str, amqp_uri: str, n: int, in_flight: int, rate: float | None, pids: dict[str, int]) -> dict:
    """One pass; returns the pipeline row (without its name)."""
    # generous: a slow pass may take n / rate, and enrolments trail the creations
    timeout = 120 + (3 * n / rate if rate else n)
    with procs.helper(listener(amqp_uri, n, timeout)) as child:
        window = CpuWindow({**pids, "listener": child.pid})
        records = asyncio.run(create_consenting(addr, n, in_flight, rate))
        out, _ = child.communicate(timeout=timeout + 30)
        cpu = window.stop()
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the member_enrolled listener died (exit {child.returncode})")
    heard = json.loads(lines[-1])
    row = summarize(records, heard["heard"], rate, cpu)
    if heard["error"]:
        row["error_kinds"]["listener"] = heard["error"]
    return row


def summarize(records: list[dict], heard: dict[str, float], rate: float | None, cpu: dict) -> dict:
    created = [r for r in records if r["id"]]
    enrolled = [r for r in created if r["id"] in heard]
    lags = sorted(heard[r["id"]] - r["sent"] for r in enrolled)
    lags_from_ack = sorted(heard[r["id"]] - r["acked"] for r in enrolled)
    first_sent = min((r["sent"] for r in records), default=0.0)
    create_span = max((r["acked"] for r in created), default=first_sent) - first_sent
    enrol_span = max((heard[r["id"]] for r in enrolled), default=first_sent) - first_sent
    errors: dict[str, int] = {}
    for r in records:
        if not r["id"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    if len(created) > len(enrolled):
        errors["not enrolled in time"] = len(created) - len(enrolled)
    return {
        "contacts": len(records),
        "paced_at": rate,
        "create_rps": round(len(created) / create_span, 1) if create_span > 0 else 0.0,
        "enroll_rps": round(len(enrolled) / enrol_span, 1) if enrol_span > 0 else 0.0,
        "lag_p50_ms": round(percentile(lags, 50) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 99) * 1000, 1),
        "lag_from_ack_p50_ms": round(percentile(lags_from_ack, 50) * 1000, 1),
        "lag_from_ack_p99_ms": round(percentile(lags_from_ack, 99) * 1000, 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "cpu": cpu,
    }


def listener(amqp_uri: str, expect: int, timeout: float, *where: str) -> list[str]:
    """The command of a listener child (``where``: exchange, event, key)."""
    return procs.module_command("bench.pipeline", "listen", amqp_uri, str(expect), str(timeout), *where)


if __name__ == "__main__" and sys.argv[1] == "listen":
    print(json.dumps(listen(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), *sys.argv[5:8])), flush=True)
