"""The MongoDB behaviour this project relies on, pinned against whatever MONGODB_URL
points at (default: the local FerretDB build, mongodb://127.0.0.1:27217/).

Production runs MongoDB; locally and in CI we run FerretDB v1 with our own fixes
(tools/ferretdb/README.md). Everything here must pass on MongoDB and on our build. What
FerretDB v1 still gets wrong is marked ``known_gap``: a strict xfail on FerretDB (so a
fix shows), a plain test elsewhere. Do not use those features; compute in Python.

Plain pymongo and real OS threads: this file must not run under eventlet (green threads
would serialize the races it checks). scripts/test.sh runs it with
``pytest -p no:pytest_nameko``. Concurrency cases assert exact outcomes, not odds.
"""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from bson import Int64, ObjectId, Regex
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

if "eventlet" in sys.modules:
    import eventlet.patcher

    if eventlet.patcher.is_monkey_patched("thread"):
        pytest.skip("the database suite needs real threads: run it with pytest -p no:pytest_nameko, "
                    "not under nameko test / eventlet", allow_module_level=True)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def race(threads: int, work, *args):
    """Run ``work(i, *args)`` in ``threads`` OS threads released at once; their results in order."""
    barrier = threading.Barrier(threads)

    def run(i):
        barrier.wait()
        return work(i, *args)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(threads)))


# --------------------------------------------------------------------------- atomic writes

def test_concurrent_inc_keeps_every_increment(db):
    db.c.insert_one({"_id": "k", "n": 0})

    def work(i):
        for _ in range(30):
            db.c.update_one({"_id": "k"}, {"$inc": {"n": 1}})

    race(20, work)
    assert db.c.find_one({"_id": "k"})["n"] == 600


def test_version_guarded_compare_and_set(db):
    """Optimistic concurrency: every reported success is one real version step."""
    db.c.insert_one({"_id": "k", "version": 0, "owner": None})

    def work(i):
        wins = 0
        for _ in range(15):
            v = db.c.find_one({"_id": "k"})["version"]
            res = db.c.update_one({"_id": "k", "version": v}, {"$set": {"owner": i}, "$inc": {"version": 1}})
            wins += res.modified_count
        return wins

    wins = sum(race(20, work))
    assert wins > 0
    assert wins == db.c.find_one({"_id": "k"})["version"]


def test_one_winner_at_one_expected_version(db):
    db.c.insert_one({"_id": "k", "version": 7})

    def work(i):
        return db.c.update_one({"_id": "k", "version": 7},
                               {"$set": {"by": i}, "$inc": {"version": 1}}).modified_count

    assert sum(race(20, work)) == 1
    assert db.c.find_one({"_id": "k"})["version"] == 8


def test_find_one_and_update_returns_distinct_values(db):
    db.c.insert_one({"_id": "seq", "n": 0})

    def work(i):
        return [db.c.find_one_and_update({"_id": "seq"}, {"$inc": {"n": 1}},
                                         return_document=ReturnDocument.AFTER)["n"] for _ in range(30)]

    values = [v for vs in race(20, work) for v in vs]
    assert sorted(values) == list(range(1, 601))


def test_guarded_decrement_never_overdraws(db):
    """1,000 racing 1-point redemptions on a balance of 300: exactly 300 succeed."""
    db.c.insert_one({"_id": "m", "balance": 300})

    def work(i):
        won = 0
        for _ in range(1000 // 25):
            won += db.c.update_one({"_id": "m", "balance": {"$gte": 1}}, {"$inc": {"balance": -1}}).modified_count
        return won

    assert sum(race(25, work)) == 300
    assert db.c.find_one({"_id": "m"})["balance"] == 0


def test_delete_races_update(db):
    """A guarded delete and a guarded update of the same document: exactly one wins."""
    n = 60
    db.c.insert_many([{"_id": i, "status": "pending"} for i in range(n)])

    def work(i):
        results = []
        for doc in range(n):
            if i % 2:
                results.append(("deleted", doc, db.c.delete_one({"_id": doc, "status": "pending"}).deleted_count))
            else:
                results.append(("updated", doc, db.c.update_one(
                    {"_id": doc, "status": "pending"}, {"$set": {"status": "done", "by": i}}).modified_count))
        return results

    outcomes = [r for rs in race(4, work) for r in rs]
    for doc in range(n):
        deleted = sum(c for kind, d, c in outcomes if d == doc and kind == "deleted")
        updated = sum(c for kind, d, c in outcomes if d == doc and kind == "updated")
        assert deleted + updated == 1, (doc, deleted, updated)
        stored = db.c.find_one({"_id": doc})
        assert (stored is None) == bool(deleted)
        if stored is not None:
            assert stored["status"] == "done"


def test_delete_then_update_does_not_resurrect(db):
    db.c.insert_one({"_id": "k", "n": 0})

    def work(i):
        if i == 0:
            return db.c.delete_one({"_id": "k"}).deleted_count
        return sum(db.c.update_one({"_id": "k"}, {"$inc": {"n": 1}}).modified_count for _ in range(20))

    race(8, work)
    assert db.c.find_one({"_id": "k"}) is None


def test_unique_index_insert_race_has_one_winner(db):
    db.c.create_index("email", unique=True)

    def work(i):
        try:
            db.c.insert_one({"email": "sara@example.com", "by": i})
            return 1
        except DuplicateKeyError:
            return 0

    assert sum(race(20, work)) == 1
    assert db.c.count_documents({"email": "sara@example.com"}) == 1


def test_duplicate_id_insert_race_has_one_winner(db):
    def work(i):
        try:
            db.c.insert_one({"_id": "claim:1", "by": i})
            return 1
        except DuplicateKeyError:
            return 0

    assert sum(race(20, work)) == 1


def upsert_retrying(coll, flt, update):
    """An upsert that hits a duplicate key is retried (MongoDB may raise it when two
    upserts race; since 4.2 it mostly retries itself): the retry finds the document."""
    for _ in range(5):
        try:
            return coll.update_one(flt, update, upsert=True)
        except DuplicateKeyError:
            continue
    raise AssertionError("upsert kept hitting a duplicate key")


def test_upsert_race_on_unique_field(db):
    db.c.create_index("email", unique=True)

    def work(i):
        for _ in range(5):
            upsert_retrying(db.c, {"email": "sara@example.com"},
                            {"$inc": {"n": 1}, "$setOnInsert": {"created_at": T0}})

    race(20, work)
    docs = list(db.c.find({"email": "sara@example.com"}))
    assert len(docs) == 1
    assert docs[0]["n"] == 100
    assert docs[0]["created_at"] == T0


def test_upsert_race_by_id(db):
    def work(i):
        res = upsert_retrying(db.c, {"_id": "counter"}, {"$inc": {"n": 1}})
        return res.upserted_id is not None

    inserted = race(20, work)
    assert sum(inserted) == 1
    assert db.c.find_one({"_id": "counter"})["n"] == 20


def test_upsert_races_plain_insert(db):
    """An insert and an upsert of one unique key: one document, and exactly one of them created it."""
    db.c.create_index("key", unique=True)
    for round_ in range(20):
        key = f"k{round_}"

        def work(i):
            if i == 0:
                try:
                    db.c.insert_one({"key": key, "from": "insert"})
                    return "inserted"
                except DuplicateKeyError:
                    return "duplicate"
            res = upsert_retrying(db.c, {"key": key}, {"$set": {"seen": True}, "$setOnInsert": {"from": "upsert"}})
            return "upserted" if res.upserted_id is not None else "updated"

        a, b = race(2, work)
        docs = list(db.c.find({"key": key}))
        assert len(docs) == 1
        assert (a, b) in {("inserted", "updated"), ("duplicate", "upserted")}
        assert docs[0]["from"] == ("insert" if a == "inserted" else "upsert")
        assert docs[0]["seen"] is True


# --------------------------------------------------------------------------- equality and arrays

@pytest.mark.parametrize("indexed", [False, True], ids=["no index", "index"])
def test_equality_matches_array_elements(db, indexed):
    if indexed:
        db.c.create_index("tags")
        db.c.create_index("scores")
    db.c.insert_many([
        {"_id": 1, "tags": ["vip", "x"], "scores": [1, 5]},
        {"_id": 2, "tags": "vip", "scores": 5.0},
        {"_id": 3, "tags": ["x"], "scores": [Int64(7)]},
        {"_id": 4, "tags": ["VIP"], "scores": []},
        {"_id": 5},
    ])
    ids = lambda f: sorted(d["_id"] for d in db.c.find(f))  # noqa: E731
    assert ids({"tags": "vip"}) == [1, 2]
    assert ids({"tags": {"$in": ["vip", "nope"]}}) == [1, 2]
    assert ids({"tags": ["x"]}) == [3]               # a whole-array equality
    assert ids({"scores": 5}) == [1, 2]              # int matches int and double
    assert ids({"scores": {"$gt": 4}}) == [1, 2, 3]  # a range matches an element
    assert ids({"scores": Int64(7)}) == [3]
    assert ids({"tags": {"$exists": False}}) == [5]


STRINGS = ["", "A", "Z", "a", "ab", "ab ", "ab!", "abc", "b", "con_01JD8ZQ", "con_01JD8ZR", "z~", "é", "€",
           "\U0001F600", "[x", "\\", 'a"b', "a<b&c>", "\u2028", "5"]
NUMBERS = [0, 1, -1, 5, Int64(5), 5.0, 5.5, 0.1, -0.0, 1e21, Int64(1 << 60), float(1 << 60), 10, 100]


def bracket(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def scalar_matches(v, op, x):
    if bracket(v) != bracket(x):
        return False
    return {"$eq": v == x, "$gt": v > x, "$gte": v >= x, "$lt": v < x, "$lte": v <= x}[op]


def matches(value, op, x):
    """MongoDB's comparison of a field with a scalar operand (arrays: any element)."""
    if isinstance(value, list):
        return any(scalar_matches(e, op, x) for e in value)
    return value is not None and scalar_matches(value, op, x)


def range_docs():
    docs = []
    for i in range(70):
        doc = {"_id": f"con_{i:03d}", "seq": i}
        doc["name"] = STRINGS[i % len(STRINGS)] if i % 9 else [STRINGS[i % 5], STRINGS[-1 - i % 4]]
        if i % 7:
            doc["n"] = NUMBERS[i % len(NUMBERS)] if i % 11 else [NUMBERS[i % 3], 50]
        if i % 5:
            doc["due_at"] = T0 + timedelta(hours=i - 35) if i % 13 else [T0, T0 + timedelta(days=30)]
        if i % 17 == 0:
            doc["n"], doc["name"], doc["due_at"] = "7", 7, True  # other types in the same fields
        docs.append(doc)
    return docs


@pytest.mark.parametrize("indexed", [False, True], ids=["no index", "index"])
def test_comparisons_on_strings_numbers_and_dates(db, indexed):
    """Equality and ranges keep MongoDB's rules: type brackets, numbers across int/long/double,
    strings by code point, dates, array elements; with and without an index."""
    docs = range_docs()
    if indexed:
        for f in ("name", "n", "due_at"):
            db.c.create_index(f)
    db.c.insert_many(docs)
    operands = {"name": ["", "a", "ab", "con_01JD8ZQ", "é", "\U0001F600", "[", "Z"],
                "n": [0, 5, Int64(5), 5.0, 5.5, -1, 1e21, Int64(1 << 60), float(1 << 60), 0.1],
                "due_at": [T0, T0 - timedelta(hours=10), T0 + timedelta(hours=10, minutes=1)]}
    for field, xs in operands.items():
        for x in xs:
            for op in ("$eq", "$gt", "$gte", "$lt", "$lte"):
                want = sorted(d["_id"] for d in docs if matches(d.get(field), op, x))
                flt = {field: x} if op == "$eq" else {field: {op: x}}
                got = sorted(d["_id"] for d in db.c.find(flt))
                assert got == want, flt


def test_ranges_on_id_and_paging(db):
    ids = [f"con_01JD{i:04d}" for i in range(120)]
    db.c.insert_many([{"_id": i, "n": k} for k, i in enumerate(ids)])
    db.c.insert_many([{"_id": ObjectId(), "n": -1}, {"_id": 17, "n": -2}])  # other _id types
    assert [d["_id"] for d in db.c.find({"_id": {"$lt": ids[5]}}).sort("_id", ASCENDING)] == ids[:5]
    assert db.c.count_documents({"_id": {"$gte": ids[100], "$lt": ids[110]}}) == 10
    # page backwards by _id, 7 at a time, as the services page
    seen, cursor = [], {"$gt": ""}
    while True:
        page = [d["_id"] for d in db.c.find({"_id": cursor}).sort("_id", DESCENDING).limit(7)]
        if not page:
            break
        assert len(page) <= 7
        seen += page
        cursor = {"$lt": page[-1]}
    assert seen == sorted(ids, reverse=True)
    # ascending from a cursor, with another condition
    assert [d["n"] for d in db.c.find({"_id": {"$gt": ids[50]}, "n": {"$lt": 55}}).sort("_id", 1).limit(3)] \
        == [51, 52, 53]
    assert [d["_id"] for d in db.c.find({"_id": {"$in": [ids[7], ids[3], 17, ids[9]]}}).sort("_id", -1)] \
        == [ids[9], ids[7], ids[3], 17]
    # ObjectIds page the same way (their order is their creation order)
    oids = sorted(ObjectId() for _ in range(30))
    db.o.insert_many([{"_id": o} for o in reversed(oids)])
    assert [d["_id"] for d in db.o.find({"_id": {"$lt": oids[20]}}).sort("_id", -1).limit(5)] == oids[15:20][::-1]
    assert [d["_id"] for d in db.o.find({"_id": {"$gte": oids[25]}}).sort("_id", 1)] == oids[25:]


def test_special_strings_by_id_and_indexed_field(db):
    db.c.create_index("email")
    values = [s for s in STRINGS if s] + ["x\ny", "tab\tx", "nul\x00x", "\x7f", "ünïcödé"]
    db.c.insert_many([{"_id": s, "email": s} for s in values])
    for s in values:
        assert db.c.find_one({"_id": s})["email"] == s
        assert db.c.find_one({"email": s})["_id"] == s
        assert db.c.find_one({"_id": s, "email": s})["_id"] == s


def test_object_id_and_boolean_equality(db):
    db.c.create_index("ref")
    db.c.create_index("flag")
    a, b = ObjectId(), ObjectId()
    db.c.insert_many([{"_id": 1, "ref": a, "flag": True}, {"_id": 2, "ref": b, "flag": False},
                      {"_id": 3, "ref": str(a), "flag": 1}, {"_id": 4, "ref": [a], "flag": [False]}])
    assert sorted(d["_id"] for d in db.c.find({"ref": a})) == [1, 4]
    assert [d["_id"] for d in db.c.find({"ref": str(a)})] == [3]
    assert [d["_id"] for d in db.c.find({"flag": True})] == [1]
    assert sorted(d["_id"] for d in db.c.find({"flag": False})) == [2, 4]
    assert [d["_id"] for d in db.c.find({"flag": 1})] == [3]
    assert [d["_id"] for d in db.c.find({"ref": {"$gt": a}}).sort("_id", 1)] == ([2] if b > a else [])


# --------------------------------------------------------------------------- operators the code uses

def test_compound_filters_and_guards(db):
    db.c.create_index([("contact_id", ASCENDING), ("kind", ASCENDING)])
    db.c.insert_many([{"_id": i, "contact_id": f"c{i % 3}", "kind": ["note", "call"][i % 2], "balance": i,
                       "version": i % 4} for i in range(30)])
    assert sorted(d["_id"] for d in db.c.find({"contact_id": "c1", "kind": "call"})) == [1, 7, 13, 19, 25]
    assert db.c.find_one({"_id": 5, "version": 1})["_id"] == 5
    assert db.c.find_one({"_id": 5, "version": 2}) is None
    assert db.c.find_one({"_id": 5, "balance": {"$gte": 5}}) is not None
    assert db.c.find_one({"_id": 5, "balance": {"$gte": 6}}) is None
    assert db.c.count_documents({"$and": [{"contact_id": "c0"}, {"balance": {"$gt": 10}}]}) == 6
    assert db.c.count_documents({"$or": [{"contact_id": "c0"}, {"kind": "call"}]}) == 20
    assert db.c.count_documents({"contact_id": {"$ne": "c0"}, "kind": "note"}) == 10


def test_exists_in_regex_and_count(db):
    db.c.insert_many([{"_id": 1, "a": 1, "name": "sara"}, {"_id": 2, "a": None, "name": "sam"},
                      {"_id": 3, "name": "Sara"}, {"_id": 4, "p": {"q": 1}, "name": "bob"}])
    db.c.create_index("name")
    assert sorted(d["_id"] for d in db.c.find({"a": {"$exists": True}})) == [1, 2]
    assert sorted(d["_id"] for d in db.c.find({"a": None})) == [2, 3, 4]  # null matches missing
    assert [d["_id"] for d in db.c.find({"p.q": {"$exists": True}})] == [4]
    assert sorted(d["_id"] for d in db.c.find({"_id": {"$in": [1, 3, 9]}})) == [1, 3]
    assert sorted(d["_id"] for d in db.c.find({"name": {"$in": ["sam", "bob"]}})) == [2, 4]
    assert sorted(d["_id"] for d in db.c.find({"name": {"$regex": "^sa"}})) == [1, 2]
    assert sorted(d["_id"] for d in db.c.find({"name": Regex("^sa", "i")})) == [1, 2, 3]
    assert sorted(d["_id"] for d in db.c.find({"name": {"$regex": "ar"}})) == [1, 3]
    assert db.c.count_documents({}) == 4
    assert db.c.count_documents({"name": {"$gte": "s"}}) == 2


def test_update_operators(db):
    db.c.insert_one({"_id": 1, "profile": {"name": "sara", "old": 1}, "stats": {"n": 1}, "tags": ["a"]})
    after = db.c.find_one_and_update(
        {"_id": 1},
        {"$set": {"profile.name": "Sara", "profile.city": "Oslo"}, "$unset": {"profile.old": ""},
         "$inc": {"stats.n": 2, "stats.m": 1}, "$push": {"tags": "b"}},
        return_document=ReturnDocument.AFTER)
    assert after["profile"] == {"name": "Sara", "city": "Oslo"}
    assert after["stats"] == {"n": 3, "m": 1}
    assert after["tags"] == ["a", "b"]
    db.c.update_one({"_id": 1}, {"$addToSet": {"tags": {"$each": ["a", "c"]}}})
    assert db.c.find_one({"_id": 1})["tags"] == ["a", "b", "c"]
    before = db.c.find_one_and_update({"_id": 1}, {"$set": {"x": 1}})
    assert "x" not in before
    db.c.update_one({"_id": 1}, {"$pull": {"tags": "a"}})   # $pull of a plain value works
    assert db.c.find_one({"_id": 1})["tags"] == ["b", "c"]


def test_set_on_insert_and_upsert_result(db):
    res = db.c.update_one({"_id": "m"}, {"$setOnInsert": {"created_at": T0}, "$set": {"updated_at": T0}},
                          upsert=True)
    assert res.upserted_id == "m"
    later = T0 + timedelta(hours=1)
    res = db.c.update_one({"_id": "m"}, {"$setOnInsert": {"created_at": later}, "$set": {"updated_at": later}},
                          upsert=True)
    assert res.upserted_id is None and res.modified_count == 1
    assert db.c.find_one({"_id": "m"}) == {"_id": "m", "created_at": T0, "updated_at": later}
    doc = db.c.find_one_and_update({"email": "x@example.com"}, {"$setOnInsert": {"n": 0}}, upsert=True,
                                   return_document=ReturnDocument.AFTER)
    assert doc["email"] == "x@example.com" and doc["n"] == 0  # the filter's equality is in the new document


def test_sort_limit_skip(db):
    db.c.insert_many([{"_id": i, "at": T0 + timedelta(minutes=(i * 7) % 30), "k": i % 3} for i in range(30)])
    db.c.create_index([("k", ASCENDING), ("at", DESCENDING)])
    got = [d["_id"] for d in db.c.find({"k": 1}).sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(3)]
    want = sorted((d for d in range(30) if d % 3 == 1), key=lambda i: ((i * 7) % 30, i), reverse=True)[:3]
    assert got == want
    assert [d["_id"] for d in db.c.find({}).sort("_id", -1).skip(2).limit(2)] == [27, 26]
    first = db.c.find_one({"k": 2}, sort=[("at", ASCENDING)])
    assert first["_id"] == min((i for i in range(30) if i % 3 == 2), key=lambda i: ((i * 7) % 30, i))


def test_delete_many_with_range(db):
    db.c.create_index("handled_at")
    db.c.insert_many([{"_id": i, "handled_at": T0 + timedelta(days=i)} for i in range(40)])
    assert db.c.delete_many({"handled_at": {"$lt": T0 + timedelta(days=30)}}).deleted_count == 30
    assert db.c.count_documents({}) == 10
    assert db.c.find_one(sort=[("handled_at", ASCENDING)])["_id"] == 30


def test_group_with_one_accumulator(db):
    db.c.insert_many([{"tier": t, "erased": i == 0} for i, t in enumerate("aabbbc")])
    rows = {r["_id"]: r["n"] for r in db.c.aggregate([{"$match": {"erased": False}},
                                                      {"$group": {"_id": "$tier", "n": {"$sum": 1}}}])}
    assert rows == {"a": 1, "b": 3, "c": 1}


# --------------------------------------------------------------------------- our build: no scans

def plan(db, flt, sort=None):
    cmd = {"find": "c", "filter": flt}
    if sort:
        cmd["sort"] = sort
        cmd["limit"] = 5
    return db.command("explain", cmd)


@pytest.mark.parametrize("flt, sort", [
    ({"_id": "con_1"}, None),
    ({"_id": "con_1", "version": 3}, None),
    ({"_id": "con_1", "balance": {"$gte": 1}}, None),
    ({"contact_id": "c1"}, None),
    ({"contact_id": "c1", "kind": "note"}, None),
    ({"due_at": {"$lt": T0}}, None),
    ({"due_at": {"$gte": T0, "$lt": T0 + timedelta(days=1)}}, None),
    ({"amount": {"$gt": 5}}, None),
    ({"_id": {"$lt": "con_5"}}, None),
    ({"email": {"$in": ["a@x", "b@x"]}}, None),
    ({"email": {"$regex": "^sar"}}, None),
    ({"_id": {"$lt": "con_5"}, "erased": False}, {"_id": -1}),
], ids=lambda v: str(v))
def test_ferretdb_lookups_use_an_index(db, ferretdb, flt, sort):
    """Our FerretDB build pushes these shapes down to an index (stock FerretDB scans)."""
    if not ferretdb:
        pytest.skip("FerretDB's explain only (MongoDB plans its own indexes)")
    for f in ("contact_id", "due_at", "amount", "email", "erased"):
        db.c.create_index(f)
    db.c.insert_one({"_id": "x"})
    res = plan(db, flt, sort)
    steps = " ".join(res["queryPlanner"]["Plan"])
    assert res["filterPushdown"] is True
    assert "USING INDEX" in steps and "SCAN" not in steps and "TEMP B-TREE" not in steps, steps
    if sort:
        assert res["sortPushdown"] is True


# --------------------------------------------------------------------------- known gaps of FerretDB v1

@pytest.mark.known_gap("nested arrays cannot be stored")
def test_nested_arrays(db):
    db.c.insert_one({"_id": 1, "m": [[1, 2], [3]]})
    assert db.c.find_one({"_id": 1})["m"] == [[1, 2], [3]]


@pytest.mark.known_gap("$set of a subdocument equal in values but not in keys is ignored (crm_common.updates)")
def test_set_of_a_subdocument_with_other_keys(db):
    db.c.insert_one({"_id": 1, "counts": {"queued": 5}})
    db.c.update_one({"_id": 1}, {"$set": {"counts": {"sent": 5}}})
    assert db.c.find_one({"_id": 1})["counts"] == {"sent": 5}


@pytest.mark.known_gap("$pull with a condition is ignored")
def test_pull_with_condition(db):
    db.c.insert_one({"_id": 1, "scores": [1, 5, 6, 8], "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 3}]})
    db.c.update_one({"_id": 1}, {"$pull": {"scores": {"$gte": 6}, "items": {"qty": {"$lt": 2}}}})
    doc = db.c.find_one({"_id": 1})
    assert doc["scores"] == [1, 5]
    assert doc["items"] == [{"sku": "b", "qty": 3}]


@pytest.mark.known_gap("$push with $slice")
def test_push_with_slice(db):
    db.c.insert_one({"_id": 1, "recent": [1, 2, 3]})
    db.c.update_one({"_id": 1}, {"$push": {"recent": {"$each": [4, 5], "$slice": -3}}})
    assert db.c.find_one({"_id": 1})["recent"] == [3, 4, 5]


@pytest.mark.known_gap("$elemMatch on subdocuments")
def test_elem_match_on_subdocuments(db):
    db.c.insert_many([{"_id": 1, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}]},
                      {"_id": 2, "items": [{"sku": "a", "qty": 5}]}])
    got = [d["_id"] for d in db.c.find({"items": {"$elemMatch": {"sku": "a", "qty": {"$gt": 2}}}})]
    assert got == [2]


@pytest.mark.known_gap("$group with more than one accumulator")
def test_group_with_several_accumulators(db):
    db.c.insert_many([{"k": "a", "v": 1}, {"k": "a", "v": 2}, {"k": "b", "v": 5}])
    rows = {r["_id"]: (r["n"], r["total"], r["top"])
            for r in db.c.aggregate([{"$group": {"_id": "$k", "n": {"$sum": 1}, "total": {"$sum": "$v"},
                                                 "top": {"$max": "$v"}}}])}
    assert rows == {"a": (2, 3, 2), "b": (1, 5, 5)}


@pytest.mark.known_gap("$lookup is not implemented")
def test_lookup(db):
    db.a.insert_one({"_id": 1, "b_id": 2})
    db.b.insert_one({"_id": 2, "name": "x"})
    rows = list(db.a.aggregate([{"$lookup": {"from": "b", "localField": "b_id", "foreignField": "_id",
                                             "as": "b"}}]))
    assert rows[0]["b"] == [{"_id": 2, "name": "x"}]


@pytest.mark.known_gap("transactions are not implemented")
def test_transactions(client, db, ferretdb):
    if not ferretdb and not client.admin.command("hello").get("setName"):
        pytest.skip("MongoDB runs transactions on a replica set only")
    db.c.insert_one({"_id": 0})
    with client.start_session() as s:
        with s.start_transaction():
            db.c.insert_one({"_id": 1}, session=s)
            s.abort_transaction()
    assert db.c.count_documents({}) == 1


@pytest.mark.known_gap("a unique index on an array field is not per element (multikey)")
def test_unique_index_on_array_elements(db):
    db.c.create_index("emails", unique=True)
    db.c.insert_one({"emails": ["a@x", "b@x"]})
    with pytest.raises(DuplicateKeyError):
        db.c.insert_one({"emails": ["b@x", "c@x"]})


@pytest.mark.known_gap("a unique index lets many documents miss the field (MongoDB indexes them as null)")
def test_unique_index_counts_a_missing_field_once(db):
    db.c.create_index("email", unique=True)
    db.c.insert_one({"_id": 1})
    with pytest.raises((DuplicateKeyError, OperationFailure)):
        db.c.insert_one({"_id": 2})
