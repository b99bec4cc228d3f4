"""crm_common.mongo's conditional writes and the outbox bookkeeping on the real database
(FerretDB locally, or whatever MONGODB_URL points at)."""
from __future__ import annotations

import pytest

from crm_common import events as ev
from crm_common.mongo import delete_if, update_if
from support.infra import unique_db


@pytest.fixture
def coll(mongo_client):
    name = unique_db("mongo")
    yield mongo_client[name].things
    mongo_client.drop_database(name)


def test_update_if_writes_only_when_the_condition_holds(coll):
    coll.insert_one({"_id": "a", "version": 1, "x": 0})
    assert not update_if(coll, "a", {"version": 2}, {"$set": {"x": 1}})
    assert coll.find_one({"_id": "a"})["x"] == 0
    assert update_if(coll, "a", {"version": 1}, {"$set": {"x": 2}, "$inc": {"version": 1}})
    assert coll.find_one({"_id": "a"}) == {"_id": "a", "version": 2, "x": 2}
    assert not update_if(coll, "missing", {"version": 1}, {"$set": {"x": 1}})
    assert coll.count_documents({}) == 1


def test_update_if_upserts_a_missing_document_but_not_a_failing_one(coll):
    assert update_if(coll, "h", {"version": {"$lte": 3}}, {"$set": {"version": 3}}, upsert=True)
    assert not update_if(coll, "h", {"version": {"$lte": 2}}, {"$set": {"version": 2}}, upsert=True)
    assert coll.find_one({"_id": "h"})["version"] == 3


def test_delete_if(coll):
    coll.insert_one({"_id": "k", "owner": "con_1"})
    assert not delete_if(coll, "k", {"owner": "con_2"})
    assert delete_if(coll, "k", {"owner": "con_1"})
    assert coll.count_documents({}) == 0


def test_published_events_leave_the_outbox_once(coll):
    e1 = ev.envelope("thing_made", source="t", subject="a", data={})
    e2 = ev.envelope("thing_changed", source="t", subject="a", data={})
    coll.insert_one(ev.stage_on_insert({"_id": "a"}, [e1]))
    coll.update_one({"_id": "a"}, ev.stage_on_update({"$set": {"y": 1}}, [e2]))
    assert coll.find_one({"_id": "a"})[ev.OUTBOX_COUNT] == 2
    assert ev.mark_published(coll, "a", e1["event_id"])
    assert not ev.mark_published(coll, "a", e1["event_id"])  # a second publisher changes nothing
    doc = coll.find_one({"_id": "a"})
    assert doc[ev.OUTBOX_COUNT] == 1 and list(doc[ev.OUTBOX]) == [e2["event_id"]]
