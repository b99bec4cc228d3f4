"""The shared outbox helpers against the real database: staging with the state change,
clearing once, and relaying what a crash left behind."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from crm_common import clock
from crm_common import events as ev


@pytest.fixture
def coll(mongo_client):
    name = f"test_outbox_{uuid.uuid4().hex[:8]}"
    yield mongo_client[name]["things"]
    mongo_client.drop_database(name)


def test_published_events_and_other_staged_items_leave_in_one_update_once(coll):
    e1 = ev.envelope("thing_made", source="t", subject="a", data={})
    e2 = ev.envelope("thing_changed", source="t", subject="a", data={})
    coll.insert_one(ev.stage_on_insert({"_id": "a", "side": {"s1": 1}, "side_n": 1}, [e1]))
    coll.update_one({"_id": "a"}, ev.stage_on_update({"$set": {"y": 1}}, [e2]))
    assert coll.find_one({"_id": "a"})[ev.OUTBOX_COUNT] == 2
    published = []
    ev.publish_staged(coll, "a", [e1], published.append, also={"side": ["s1"]})
    ev.clear_staged(coll, "a", {ev.OUTBOX: [e1["event_id"]]})   # a second clearer changes nothing
    doc = coll.find_one({"_id": "a"})
    assert published == [e1]
    assert doc[ev.OUTBOX_COUNT] == 1 and list(doc[ev.OUTBOX]) == [e2["event_id"]]
    assert doc["side"] == {} and doc["side_n"] == 0
    # some already cleared by someone else: the rest still goes, counters stay right
    ev.clear_staged(coll, "a", {ev.OUTBOX: [e1["event_id"], e2["event_id"]]})
    assert coll.find_one({"_id": "a"})[ev.OUTBOX_COUNT] == 0


def test_the_relay_publishes_only_what_was_left_long_enough(coll):
    old = {**ev.envelope("thing_made", source="t", subject="b", data={}),
           "occurred_at": clock.to_iso(clock.now() - timedelta(minutes=1))}
    new = ev.envelope("thing_changed", source="t", subject="b", data={})
    coll.insert_one(ev.stage_on_insert({"_id": "b"}, [old, new]))
    published = []
    assert ev.relay_pending(coll, published.append) == 1
    assert published == [old] and list(coll.find_one({"_id": "b"})[ev.OUTBOX]) == [new["event_id"]]
