"""The shared nameko building blocks against the real broker and database:
publish-after-store, relay of events left pending, idempotent handlers, parking."""
from __future__ import annotations

import json

import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from support.things import ThingMade
from support.waiting import wait_for

from crm_common import clock
from crm_common import events as ev
from crm_common import probes
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles, prune_handled
from crm_common.nameko.mongo import MongoStore
from crm_common.nameko.observe import broker_check
from crm_common.nameko.remote import call, remote

from support import auth  # noqa: E402

auth.permit("producer_t.make")
auth.permit("producer_t.whoami")


class Store:
    def __init__(self, db):
        self.db = db

    @classmethod
    def ensure_indexes(cls, db):
        db.things.create_index("name")


class Producer(CrmService):
    name = "producer_t"
    OUTBOX_COLLECTIONS = ("things",)
    store = MongoStore(Store)

    @rpc
    def make(self, thing_id, publish=True):
        staged = self.outbox.announce(ThingMade(id=thing_id))
        self.store.db.things.insert_one(ev.stage_on_insert({"_id": thing_id}, staged))
        if publish:  # publish=False simulates a crash between store and publish
            self.outbox.publish(self.store.db.things, thing_id, staged)
        return staged[0]["event_id"]

    @rpc
    def whoami(self):
        return self.caller.principal.subject


class Consumer(CrmService):
    name = "consumer_t"
    store = MongoStore(Store)
    producer = remote("producer_t")

    @handles("producer_t", "thing_made")
    def on_thing_made(self, event):
        if event["data"]["id"].startswith("bad"):
            raise RuntimeError("cannot handle bad things")
        if event["data"]["id"].startswith("ask"):   # a handler calling another service, as itself
            self.store.db.seen.insert_one({"_id": event["data"]["id"], "as": call(self.producer, "whoami")})
            return
        self.store.db.seen.update_one({"_id": event["data"]["id"]}, {"$inc": {"n": 1}}, upsert=True)




@pytest.fixture
def pair(make_config, start_service, mongo_client):
    pcfg, ccfg = make_config("producer"), make_config("consumer")
    start_service(Consumer, ccfg)  # subscribe first: the queue must exist
    start_service(Producer, pcfg)
    return pcfg, mongo_client[pcfg["MONGODB_DATABASE"]], mongo_client[ccfg["MONGODB_DATABASE"]]


def test_published_event_is_handled_and_cleared_from_outbox(pair, rpc):
    cfg, pdb, cdb = pair
    rpc(cfg).producer_t.make("t1")
    wait_for(lambda: cdb.seen.find_one({"_id": "t1"}))
    doc = pdb.things.find_one({"_id": "t1"})
    assert doc[ev.OUTBOX] == {} and doc[ev.OUTBOX_COUNT] == 0


def test_a_handler_calls_other_services_as_its_own_service(pair, rpc):
    pcfg, _, cdb = pair
    rpc(pcfg).producer_t.make(thing_id="ask-1")
    asked = wait_for(lambda: cdb.seen.find_one({"_id": "ask-1"}))
    assert asked["as"] == "service:consumer_t"


def test_event_left_pending_is_relayed(pair, rpc):
    cfg, pdb, cdb = pair
    rpc(cfg).producer_t.make("t2", publish=False)
    assert pdb.things.find_one({"_id": "t2"})[ev.OUTBOX_COUNT] == 1
    wait_for(lambda: cdb.seen.find_one({"_id": "t2"}), timeout=20)
    wait_for(lambda: pdb.things.find_one({"_id": "t2"})[ev.OUTBOX_COUNT] == 0)


def test_redelivery_is_a_no_op(pair, rpc, dispatch):
    cfg, pdb, cdb = pair
    event_id = rpc(cfg).producer_t.make("t3")
    wait_for(lambda: cdb.handled_events.find_one({"_id": f"consumer_t.on_thing_made:{event_id}"}))
    again = ev.envelope("thing_made", source="producer_t", subject="t3", data={"id": "t3"}, event_id=event_id)
    dispatch(cfg, "producer_t")("thing_made", again)
    dispatch(cfg, "producer_t")("thing_made", {**again, "event_id": "evt_other"})
    wait_for(lambda: cdb.seen.find_one({"_id": "t3"})["n"] == 2)
    time.sleep(0.3)
    assert cdb.seen.find_one({"_id": "t3"})["n"] == 2  # the exact redelivery did nothing


def test_failing_handler_is_parked_then_replayable(pair, rpc):
    cfg, pdb, cdb = pair
    rpc(cfg).producer_t.make("bad1")
    parked = wait_for(lambda: cdb.parked_events.find_one({}), timeout=15)
    assert json.loads(parked["envelope"])["data"]["id"] == "bad1"
    assert "cannot handle bad things" in parked["error"]
    assert rpc(cfg).consumer_t.replay_parked_events() == {"replayed": 1}
    assert cdb.parked_events.count_documents({}) == 1  # still failing: parked again


def test_a_hostile_payload_is_parked_too(pair, dispatch):
    """Keys MongoDB refuses in a document ("$where") do not stop a delivery being parked."""
    cfg, pdb, cdb = pair
    env = ev.envelope("thing_made", source="producer_t", subject="bad2", data={"id": "bad2", "$where": {"$x": 1}})
    dispatch(cfg, "producer_t")("thing_made", env)
    parked = wait_for(lambda: cdb.parked_events.find_one({"_id": {"$regex": env["event_id"]}}), timeout=15)
    assert json.loads(parked["envelope"])["data"]["$where"] == {"$x": 1}


def test_ping_proves_broker_and_database(pair, rpc):
    cfg, pdb, cdb = pair
    assert rpc(cfg).producer_t.ping() == {"service": "producer_t", "ok": True}


def test_echo_is_a_no_op_round_trip(pair, rpc):
    cfg, pdb, _ = pair
    assert rpc(cfg).producer_t.echo({"payload": "x" * 64}) == {"payload": "x" * 64}
    assert rpc(cfg).producer_t.echo() is None


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probe_endpoint_reports_liveness_readiness_and_metrics(pair, amqp_uri):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probes.serve(port, addr="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    # Each started service registered its broker and database checks, and they pass.
    assert {"producer_t.broker", "producer_t.database", "consumer_t.database"} <= set(probes.check_names())
    assert get(f"{base}/readyz") == (200, "ready\n")
    assert get(f"{base}/healthz") == (200, "ok\n")
    status, body = get(f"{base}/metrics")
    assert status == 200 and "crm_rpc_requests_total" in body

    # An unreachable broker makes the process unready (503, naming the check), not dead.
    probes.add_check("test.unreachable_broker", broker_check("amqp://guest:guest@127.0.0.1:1/"))
    try:
        status, body = get(f"{base}/readyz")
        assert status == 503 and body.startswith("test.unreachable_broker: ")
        assert get(f"{base}/healthz")[0] == 200
    finally:
        probes.remove_check("test.unreachable_broker")
    assert get(f"{base}/readyz")[0] == 200


def test_event_series_exist_from_the_start_and_the_parked_gauge_follows_the_store(pair):
    _, _, cdb = pair

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels)

    # Declared at zero on start, so an alert's increase() sees the very first parking.
    assert sample("crm_events_handled_total", service="consumer_t", event="thing_made", outcome="parked") is not None
    assert sample("crm_events_relayed_total", service="producer_t") is not None
    # The relay timer recounts parked deliveries, so the gauge is right after a restart.
    cdb.parked_events.insert_one({"_id": "left-over-from-a-previous-process"})
    wait_for(lambda: sample("crm_events_parked", service="consumer_t") == 1, timeout=15)


def test_old_handled_markers_are_pruned_recent_ones_kept(pair):
    _, _, cdb = pair
    now = clock.now()
    cdb.handled_events.insert_many([
        {"_id": "consumer_t.on_thing_made:old", "event_type": "thing_made", "handled_at": now - timedelta(days=31)},
        {"_id": "consumer_t.on_thing_made:new", "event_type": "thing_made", "handled_at": now - timedelta(days=29)},
    ])
    assert prune_handled(cdb, timedelta(days=30)) == 1
    assert [d["_id"] for d in cdb.handled_events.find({}, {"_id": 1})] == ["consumer_t.on_thing_made:new"]


auth.permit("ticker_t.whoami")


class Ticker(CrmService):
    """A timer that calls one of its own RPCs, as loyalty's expiry and the service desk's
    SLA timer do: the call must carry the service's own principal."""

    name = "ticker_t"
    store = MongoStore(Store)

    @rpc
    def whoami(self):
        return self.caller.principal.subject

    from nameko.timer import timer as _timer

    @_timer(interval=0.1)
    def tick(self):
        self.store.db.ticks.update_one({"_id": "me"}, {"$set": {"as": self.whoami()}}, upsert=True)


def test_a_timer_calls_its_own_rpcs_as_the_service(make_config, start_service, mongo_client):
    cfg = make_config("ticker")
    start_service(Ticker, cfg)
    db = mongo_client[cfg["MONGODB_DATABASE"]]
    assert wait_for(lambda: (db.ticks.find_one({"_id": "me"}) or {}).get("as")) == "service:ticker_t"
