"""The `database` group: the database alone, no services. Seeds a private throw-away
database (``bench_db_<random>``) to 5,000 and then 50,000 documents, prints the median
latency of the lookups and guarded writes the services rely on at each size (an indexed
lookup must not grow with the collection), the concurrency figures of issue 9 (lost
updates, compare-and-set), and drops the database. Run it against any server with
MONGODB_URL (e.g. a stock FerretDB build, to compare: tools/ferretdb/README.md).

Not a test: nothing is judged here (tests/integration/database pins the semantics).
"""
from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Callable

import pymongo
from pymongo import ReturnDocument

SIZES = (5_000, 50_000)
CONTACTS = 5_000          # distinct contact_id values: 1 document per contact at 5,000, 10 at 50,000
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN_S = 365 * 24 * 3600  # due_at spread over a year


def doc(i: int) -> dict:
    return {"_id": f"doc_{i:07d}", "contact_id": f"con_{(i * 7919) % CONTACTS:05d}", "kind": ("note", "call",
            "mail")[i % 3], "email": f"user{i}@example.com", "note": f"unindexed {i}", "version": i % 5,
            "balance": i % 1000, "due_at": T0 + timedelta(seconds=(i * 104_729) % SPAN_S),
            "profile": {"name": f"Name {i}", "tags": ["a", "b"]}}


def seed(coll, start: int, stop: int) -> float:
    """Insert documents [start, stop); documents per second."""
    t0 = time.perf_counter()
    for lo in range(start, stop, 1000):
        coll.insert_many([doc(i) for i in range(lo, min(lo + 1000, stop))], ordered=False)
    return (stop - start) / (time.perf_counter() - t0)


def timed(op: Callable[[int], object], budget_s: float, max_n: int = 300) -> dict:
    """Run ``op(k)`` for k = 0, 1, ... up to ``max_n`` times or ``budget_s`` (at least 3): median/p90 ms."""
    samples: list[float] = []
    t_end = time.perf_counter() + budget_s
    k = 0
    while k < max_n and (k < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        op(k)
        samples.append((time.perf_counter() - t0) * 1000)
        k += 1
    return {"n": len(samples), "median_ms": round(statistics.median(samples), 3),
            "p90_ms": round(statistics.quantiles(samples, n=10)[-1], 3)}


def lookups(coll, size: int, versions: dict[int, int]) -> dict[str, Callable[[int], object]]:
    """The shapes, by label; ``versions`` tracks the versions guarded_update moved."""
    pick = lambda k: (k * 7_777) % size  # noqa: E731 - spread over the whole collection
    hour = timedelta(hours=1)

    def page(k):
        cursor = f"doc_{pick(k) + 20:07d}"
        return list(coll.find({"_id": {"$lt": cursor}}).sort("_id", -1).limit(20))

    def guarded_update(k):  # optimistic concurrency: the version read before is in the filter
        i = pick(k)
        v = versions.get(i, doc(i)["version"])
        res = coll.update_one({"_id": doc(i)["_id"], "version": v}, {"$inc": {"version": 1}})
        assert res.modified_count == 1, (i, v)
        versions[i] = v + 1

    return {
        "find_one by _id": lambda k: coll.find_one({"_id": doc(pick(k))["_id"]}),
        "find_one by indexed field (email)": lambda k: coll.find_one({"email": doc(pick(k))["email"]}),
        "find by indexed field (contact_id, all its docs)":
            lambda k: list(coll.find({"contact_id": doc(pick(k))["contact_id"]})),
        "find_one {_id, version}": lambda k: coll.find_one({"_id": doc(pick(k))["_id"], "version": pick(k) % 5}),
        "find_one {_id, balance: {$gte}}":
            lambda k: coll.find_one({"_id": doc(pick(k))["_id"], "balance": {"$gte": 1}}),
        "find {contact_id, kind}": lambda k: list(coll.find({"contact_id": doc(pick(k))["contact_id"],
                                                             "kind": "call"})),
        "range on indexed date (1 h window)": lambda k: list(coll.find(
            {"due_at": {"$gte": doc(pick(k))["due_at"], "$lt": doc(pick(k))["due_at"] + hour}})),
        "page by _id ({_id: {$lt}}, sort _id desc, limit 20)": page,
        "update_one {_id, version} $inc version": guarded_update,
        "find_one by unindexed field (scan)": lambda k: coll.find_one({"note": f"unindexed {pick(k)}"}),
    }


def race(threads: int, work) -> list:
    barrier = threading.Barrier(threads)

    def run(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(threads)))


def concurrency(db) -> dict:
    """Issue 9's concurrency figures: what MongoDB guarantees is the first number of each pair."""
    c = db.race
    out = {}
    c.insert_one({"_id": "inc", "n": 0})
    race(20, lambda i: [c.update_one({"_id": "inc"}, {"$inc": {"n": 1}}) for _ in range(30)])
    out["20 x 30 $inc: kept of 600"] = c.find_one({"_id": "inc"})["n"]

    c.insert_one({"_id": "cas", "version": 0})

    def cas(i):
        wins = 0
        for _ in range(15):
            v = c.find_one({"_id": "cas"})["version"]
            wins += c.update_one({"_id": "cas", "version": v}, {"$inc": {"version": 1}}).modified_count
        return wins

    wins = sum(race(20, cas))
    out["compare-and-set: reported successes / real version steps"] = f"{wins} / {c.find_one({'_id': 'cas'})['version']}"

    c.insert_one({"_id": "seq", "n": 0})
    values = race(20, lambda i: [c.find_one_and_update({"_id": "seq"}, {"$inc": {"n": 1}},
                                                       return_document=ReturnDocument.AFTER)["n"] for _ in range(30)])
    out["find_one_and_update $inc: distinct of 600"] = len({v for vs in values for v in vs})

    c.insert_one({"_id": "bal", "balance": 300})
    t0 = time.perf_counter()
    won = sum(race(25, lambda i: sum(c.update_one({"_id": "bal", "balance": {"$gte": 1}},
                                                  {"$inc": {"balance": -1}}).modified_count for _ in range(40))))
    out["1,000 guarded decrements on 300: succeeded, balance"] = (
        f"{won}, {c.find_one({'_id': 'bal'})['balance']} ({time.perf_counter() - t0:.2f} s)")
    return out


def run(mongodb_url: str, say: Callable[[str], None] = print, budget_s: float = 5.0,
        sizes: tuple[int, ...] = SIZES) -> dict:
    name = f"bench_db_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(mongodb_url, tz_aware=True, maxPoolSize=64)
    server = client.admin.command("buildInfo")
    result = {"server": "FerretDB" if "ferretdbVersion" in server else f"MongoDB {server.get('version')}",
              "database": name, "sizes": {}}
    say(f"database: {result['server']} at {mongodb_url}, private database {name}")
    try:
        db = client[name]
        coll = db.docs
        for f in ("email", "contact_id", "due_at"):
            coll.create_index(f)
        done, versions = 0, {}
        for size in sizes:
            rate = seed(coll, done, size)
            done = size
            say(f"  {size} documents (inserted at {rate:.0f}/s)")
            figures = {"insert_per_s": round(rate)}
            for label, op in lookups(coll, size, versions).items():
                figures[label] = timed(op, budget_s)
                say(f"    {label:52s} median {figures[label]['median_ms']:9.2f} ms  "
                    f"p90 {figures[label]['p90_ms']:9.2f} ms  (n={figures[label]['n']})")
            result["sizes"][str(size)] = figures
        result["concurrency"] = concurrency(db)
        for label, value in result["concurrency"].items():
            say(f"  {label}: {value}")
    finally:
        client.drop_database(name)
        client.close()
    return result
