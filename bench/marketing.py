"""The `marketing` group: issue 12's figures.

1. Full evaluation of a segment over N contacts (100,000 by default; target < 2 s): the
   audience pages of N synthetic contacts written into a private throw-away database,
   then a preview (the rule over every page entry) of three rules, five times each.
2. A campaign to N recipients through the gateway: N synthetic contacts (audience documents,
   pages and a static list) written straight into the running marketing service's
   database, then CreateCampaign + SendCampaign: the time until every message is queued
   (target < 30 s), then the delivery rate into the local SMTP sink over a window. The
   synthetic contacts, the campaign and its messages are removed afterwards.
3. Event -> segment membership lag: contacts created through the gateway with a tag a
   dynamic segment looks for, until marketing's ``segment_entered`` for each is heard
   (p50/p99), listened to by a child process as in bench.pipeline.

    python -m bench.marketing listen AMQP_URI EXPECT TIMEOUT
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import grpc
import pika
import pymongo
from google.protobuf import struct_pb2

from crm.v1 import contacts_pb2, contacts_pb2_grpc, marketing_pb2, marketing_pb2_grpc

from . import credentials, procs
from .cpu import CpuWindow
from .stats import percentile

EVALUATION_TARGET_S, QUEUE_TARGET_S, MEMBERSHIP_TARGET_S = 2.0, 30.0, 1.0
DELIVERY_WINDOW_S = 30.0
RULES = {
    "gold buyers (tier + orders in 30 days)": {"all": [{"field": "tier", "op": "gte", "value": "gold"},
                                                       {"field": "orders_in_last_days", "days": 30, "op": "gte",
                                                        "value": 1}]},
    "lapsed high value (value band + no order for 90 days)": {
        "all": [{"field": "value_band", "op": "gte", "value": "high"},
                {"field": "last_order", "op": "more_than_days_ago", "value": 90}]},
    "gold who prefer SMS, or birthday this month": {
        "any": [{"all": [{"field": "tier", "op": "gte", "value": "gold"},
                         {"field": "preferred_channel", "op": "eq", "value": "sms"}]},
                {"field": "birthday", "op": "this_month"}]},
}
TIERS = ("bronze", "silver", "gold", "platinum")


# --------------------------------------------------------------------------- synthetic audience

def synthetic(n: int, run: str, now: datetime) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(contact_id, audience state, facts)`` of n believable contacts (seeded: the same every run)."""
    from marketing.audience import facts as F
    from marketing.audience import state as S

    rnd = random.Random(7)
    out = []
    for i in range(n):
        cid = f"con_bench{run}{i:07d}"
        state: dict[str, Any] = {
            "contact": {"version": 1, "given_name": f"Guest {i}", "display_name": f"Guest {i}",
                        "email": f"guest{i}.{run}@bench.example", "emails": [f"guest{i}.{run}@bench.example"],
                        "tags": rnd.sample(["vip", "newsletter", "b2b", "wholesale"], rnd.randint(0, 2)),
                        "lifecycle_stage": "customer", "country": rnd.choice(["IR", "DE", "FR", "US"]),
                        "birthday": f"19{50 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                        "created_at": now - timedelta(days=i % 900)},
            "consents": {"email": {"granted": rnd.random() < 0.9, "at": now - timedelta(days=30)}},
            "loyalty": {"member": True, "tier": TIERS[min(3, int(rnd.expovariate(1.2)))],
                        "balance": rnd.randint(0, 5000)},
            "purchases": {"order_count": rnd.randint(0, 30), "totals": {"EUR": rnd.randint(0, 900_000)},
                          "last_at": now - timedelta(days=rnd.randint(0, 400))},
        }
        if rnd.random() < 0.3:
            state["orders"] = {f"ord_{i}": {"at": now - timedelta(days=rnd.randint(0, 60)), "currency": "EUR",
                                            "amount": rnd.randint(1000, 90_000), "refunded": False}}
        if rnd.random() < 0.4:
            state = S.apply_survey(state, "bench", {"preferred_channel": rnd.choice(["sms", "email"])}, now)
        out.append((cid, state, F.project(state)))
    return out


def write_pages(pages, entries: list[tuple[str, dict, dict]], segments: dict[str, list[str]]) -> None:
    """Page entries of ``entries`` (and their memberships) added to the pages collection."""
    from marketing.audience.store import encode_entry, page_of

    by_page: dict[str, dict[str, Any]] = defaultdict(dict)
    for cid, _, facts in entries:
        by_page[page_of(cid)][f"e.{cid}"] = encode_entry(facts, segments.get(cid, []))
        by_page[page_of(cid)][f"ev.{cid}"] = 1
    for page, sets in by_page.items():
        pages.update_one({"_id": page}, {"$set": sets}, upsert=True)


# --------------------------------------------------------------------------- 1. evaluation

def evaluation(mongodb_url: str, n: int, say: Callable[[str], None], repeats: int = 5) -> dict[str, Any]:
    from marketing.audience.store import AudienceStore
    from marketing.segments import filling, rules
    from marketing.segments.evaluate import Context, compile_rule

    client = pymongo.MongoClient(mongodb_url, tz_aware=True)
    db = client[f"bench_marketing_{uuid.uuid4().hex[:8]}"]
    try:
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        AudienceStore(db).create_pages()
        write_pages(db["audience_pages"], synthetic(n, "e", now), {})
        seeded = time.perf_counter() - started
        store, out = AudienceStore(db), {"contacts": n, "seed_s": round(seeded, 1), "rules": {}}
        for name, rule in RULES.items():
            compiled = compile_rule(rules.parse(rule))
            times, count = [], 0
            for _ in range(repeats):
                found = filling.preview(store, compiled, Context(now), 10)
                times.append(found.seconds)
                count = found.count
            out["rules"][name] = {"matched": count, "median_s": round(sorted(times)[len(times) // 2], 3),
                                  "max_s": round(max(times), 3)}
            say(f"  {name:55s} {count:>7} of {n}: median {out['rules'][name]['median_s']:.2f} s, "
                f"max {out['rules'][name]['max_s']:.2f} s")
        return out
    finally:
        client.drop_database(db.name)
        client.close()


# --------------------------------------------------------------------------- 2. a campaign

def campaign(addr: str, mongodb_url: str, database: str, mailbox: Path, n: int, pids: dict[str, int],
             say: Callable[[str], None], window_s: float = DELIVERY_WINDOW_S) -> dict[str, Any]:
    from marketing.audience.store import AudienceStore
    from marketing.segments.store import SegmentStore

    run = uuid.uuid4().hex[:6]
    client = pymongo.MongoClient(mongodb_url, tz_aware=True)
    db = client[database]
    now = datetime.now(timezone.utc)
    seg_id = f"seg_bench{run}"
    entries = synthetic(n, run, now)
    try:
        SegmentStore(db).insert({"_id": seg_id, "name": f"bench {run}", "name_key": f"bench {run}", "kind": "static",
                                 "state": "active", "fill": "done", "version": 1, "created_at": now,
                                 "updated_at": now}, [])
        for start in range(0, n, 2000):
            db["audience"].insert_many([{"_id": cid, **state, "segments": {seg_id: {"since": now, "kind": "static"}},
                                         "version": 1, "created_at": now, "updated_at": now}
                                        for cid, state, _ in entries[start:start + 2000]], ordered=False)
        AudienceStore(db).create_pages()
        write_pages(db["audience_pages"], entries, {cid: [seg_id] for cid, _, _ in entries})
        say(f"  {n} synthetic recipients written in {(datetime.now(timezone.utc) - now).total_seconds():.1f} s")
        stub = marketing_pb2_grpc.MarketingServiceStub(credentials.channel(addr, "marketer"))
        created = stub.CreateCampaign(marketing_pb2.CreateCampaignRequest(
            name=f"bench {run}", channel="email", include_segment_ids=[seg_id],
            email=marketing_pb2.EmailContent(subject="Hello {{ first_name }}",
                                             body_text="Dear {{ first_name }}: https://shop.example/bench")), timeout=30)
        before = len(_index(mailbox))
        window = CpuWindow(pids)
        sent_at = time.monotonic()
        stub.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=created.id), timeout=30)
        progress = _poll(lambda: (p := stub.GetCampaignProgress(marketing_pb2.GetCampaignProgressRequest(
            campaign_id=created.id), timeout=30)).recipients == n and p, timeout=600)
        queued_s = time.monotonic() - sent_at
        queue_cpu = window.stop()
        stored = db["campaigns"].find_one({"_id": created.id}, {"queue": 1}) or {}
        say(f"  queued {n} messages {queued_s:.1f} s after SendCampaign "
            f"(the queueing itself {stored.get('queue', {}).get('seconds', 0):.1f} s)")
        window, started, before = CpuWindow(pids), time.monotonic(), len(_index(mailbox))
        while time.monotonic() - started < window_s:
            progress = stub.GetCampaignProgress(marketing_pb2.GetCampaignProgressRequest(campaign_id=created.id),
                                                timeout=30)
            if progress.state == "completed":
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        delivery_cpu = window.stop()
        received = len(_index(mailbox)) - before
        rate = received / elapsed if elapsed else 0.0     # what reached the SMTP server, the window's own
        say(f"  delivered {progress.sent} ({rate:.0f}/s over {elapsed:.0f} s), the sink received {received}")
        return {"recipients": n, "queue_s": round(queued_s, 2), "queueing_s": stored.get("queue", {}).get("seconds"),
                "sent": progress.sent, "delivery_window_s": round(elapsed, 1), "delivered_per_s": round(rate, 1),
                "sink_received": received, "cpu_queue": queue_cpu, "cpu_delivery": delivery_cpu}
    finally:
        _forget(db, seg_id, [cid for cid, _, _ in entries])
        client.close()


def _forget(db, seg_id: str, contact_ids: list[str]) -> None:
    """The bench's campaign, list and synthetic contacts, gone from the running service."""
    from marketing.audience.store import page_of
    from marketing.segments.store import SegmentStore

    for cmp in db["campaigns"].find({"include": seg_id}, {"_id": 1}):
        db["campaigns"].update_one({"_id": cmp["_id"]}, {"$set": {"state": "cancelled", "due_at": None}})
        for collection in ("batches", "messages"):   # by id, in chunks (FerretDB: one SQL variable per row)
            ids = [d["_id"] for d in db[collection].find({"campaign_id": cmp["_id"]}, {"_id": 1})]
            for start in range(0, len(ids), 500):
                db[collection].delete_many({"_id": {"$in": ids[start:start + 500]}})
        db["campaigns"].delete_one({"_id": cmp["_id"]})
    by_page: dict[str, dict[str, str]] = defaultdict(dict)
    for cid in contact_ids:
        by_page[page_of(cid)].update({f"e.{cid}": "", f"ev.{cid}": ""})
    for page, unset in by_page.items():
        db["audience_pages"].update_one({"_id": page}, {"$unset": unset})
    for start in range(0, len(contact_ids), 500):
        chunk = contact_ids[start:start + 500]
        db["audience"].delete_many({"_id": {"$in": chunk}})
        db["contact_sends"].delete_many({"_id": {"$in": chunk}})
    db["segments"].delete_one({"_id": seg_id})
    SegmentStore(db).bump()


def _index(mailbox: Path) -> list[str]:
    path = mailbox / "email" / "index.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def _poll(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("the campaign was not queued in time")


# --------------------------------------------------------------------------- 3. membership lag

def listen(amqp_uri: str, expect: int, timeout: float) -> dict:
    """{"heard": {contact_id: monotonic time}} of marketing's segment_entered events, and
    {"facts": {...}} of the contact_created events that caused them (heard on the same
    queue: when marketing could hear them too)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    for exchange, key in (("marketing.events", "segment_entered"), ("contacts.events", "contact_created")):
        ch.exchange_declare(exchange, "topic", durable=True)
        ch.queue_bind(queue, exchange, routing_key=key)
    heard: dict[str, float] = {}
    facts: dict[str, float] = {}
    deadline, last = time.monotonic() + timeout, time.monotonic()
    print("ready", flush=True)
    for method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=0.5):
        now = time.monotonic()
        if method is not None:
            (heard if method.exchange == "marketing.events" else facts).setdefault(json.loads(body)["subject"], now)
            last = now
        if len(heard) >= expect or now > deadline or (heard and now - last > 10):
            break
    conn.close()
    return {"heard": heard, "facts": facts}


async def _create_tagged(addr: str, tag: str, n: int, rate: float | None, in_flight: int) -> list[dict]:
    records: list[dict] = []
    indexes = iter(range(n))
    async with credentials.aio_channel(addr) as channel:
        stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        start = time.monotonic()

        async def worker() -> None:
            for i in indexes:
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                contact = contacts_pb2.Contact(given_name="Lag", family_name=f"Bench {tag}", tags=[tag],
                                               emails=[contacts_pb2.Email(address=f"lag{i}.{tag}@bench.example")])
                sent = time.monotonic()
                try:
                    reply = await stub.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10)
                    records.append({"id": reply.id, "sent": sent})
                except grpc.aio.AioRpcError as exc:
                    records.append({"id": None, "sent": sent, "error": exc.code().name})
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return records


def membership_lag(addr: str, amqp_uri: str, n: int, rate: float | None, in_flight: int,
                   pids: dict[str, int]) -> dict[str, Any]:
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    stub = marketing_pb2_grpc.MarketingServiceStub(credentials.channel(addr, "marketer"))
    rule = struct_pb2.Struct()
    rule.update({"field": "tags", "op": "contains_any", "value": [tag]})
    seg = stub.CreateSegment(marketing_pb2.CreateSegmentRequest(name=f"lag {tag}", kind="dynamic", rule=rule),
                             timeout=30)
    _poll(lambda: stub.GetSegment(marketing_pb2.GetSegmentRequest(segment_id=seg.id), timeout=30).fill_state == "done",
          timeout=120)
    timeout = 120 + (3 * n / rate if rate else n)
    try:
        with procs.helper(procs.module_command("bench.marketing", "listen", amqp_uri, str(n), str(timeout))) as listener:
            window = CpuWindow({**pids, "listener": listener.pid})
            records = asyncio.run(_create_tagged(addr, tag, n, rate, in_flight))
            out, _ = listener.communicate(timeout=timeout + 30)
            cpu = window.stop()
    finally:
        stub.ArchiveSegment(marketing_pb2.ArchiveSegmentRequest(segment_id=seg.id), timeout=30)
    got = json.loads(out.strip().splitlines()[-1])
    heard, facts = got["heard"], got["facts"]
    created = [r for r in records if r["id"]]
    lags = sorted(heard[r["id"]] - r["sent"] for r in created if r["id"] in heard)
    # marketing's own part: from the fact on the bus (contact_created) to the membership
    fact_lags = sorted(heard[cid] - facts[cid] for cid in heard if cid in facts)
    ms = lambda values, q: round(percentile(values, q) * 1000, 1)  # noqa: E731
    return {"contacts": n, "paced_at": rate, "heard": len(lags), "lag_p50_ms": ms(lags, 50),
            "lag_p99_ms": ms(lags, 99), "fact_lag_p50_ms": ms(fact_lags, 50), "fact_lag_p99_ms": ms(fact_lags, 99),
            "errors": len(records) - len(lags), "cpu": cpu}


# --------------------------------------------------------------------------- report

def targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, r in (m.get("evaluation") or {}).get("rules", {}).items():
        out.append({"target": f"segment evaluation over {m['evaluation']['contacts']:,} contacts < "
                              f"{EVALUATION_TARGET_S:.0f} s ({name})",
                    "value": f"{r['median_s']:.2f} s median, {r['max_s']:.2f} s max",
                    "met": r["median_s"] < EVALUATION_TARGET_S})
    c = m.get("campaign")
    if c:
        out.append({"target": f"a campaign to {c['recipients']:,} recipients queued in < {QUEUE_TARGET_S:.0f} s",
                    "value": f"{c['queue_s']:.1f} s", "met": c["queue_s"] < QUEUE_TARGET_S})
    for p in m.get("lag") or ():
        out.append({"target": f"membership within {MEMBERSHIP_TARGET_S:.0f} s of the fact (p99, "
                              f"{'paced at %d/s' % p['paced_at'] if p['paced_at'] else 'as fast as taken'})",
                    "value": f"{p['fact_lag_p99_ms']:.0f} ms",
                    "met": p["fact_lag_p99_ms"] < MEMBERSHIP_TARGET_S * 1000})
    return out


def lines(m: dict[str, Any]) -> list[str]:
    """The group's figures as text (the markdown report uses the same lines as a list)."""
    out = []
    e = m.get("evaluation")
    if e:
        out.append(f"Segment evaluation over {e['contacts']:,} contacts (pages seeded in {e['seed_s']} s):")
        out += [f"  {name}: {r['matched']:,} matched, median {r['median_s']:.2f} s, max {r['max_s']:.2f} s"
                for name, r in e["rules"].items()]
    c = m.get("campaign")
    if c:
        out.append(f"Campaign to {c['recipients']:,} recipients: queued {c['queue_s']:.1f} s after SendCampaign "
                   f"(queueing {c['queueing_s']} s); delivered {c['delivered_per_s']:.0f}/s into the SMTP sink over "
                   f"{c['delivery_window_s']:.0f} s ({c['sent']} sent, {c['sink_received']} received)")
    for p in m.get("lag") or ():
        out.append(f"Event -> segment_entered ({p['contacts']} contacts created, "
                   f"{'paced at %d/s' % p['paced_at'] if p['paced_at'] else 'as fast as taken'}): "
                   f"contact_created -> segment_entered p50 {p['fact_lag_p50_ms']:.0f} ms, "
                   f"p99 {p['fact_lag_p99_ms']:.0f} ms; CreateContact sent -> segment_entered p50 "
                   f"{p['lag_p50_ms']:.0f} ms, p99 {p['lag_p99_ms']:.0f} ms; {p['errors']} errors")
    return out


if __name__ == "__main__" and sys.argv[1] == "listen":
    print(json.dumps(listen(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))), flush=True)
