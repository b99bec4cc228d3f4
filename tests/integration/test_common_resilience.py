"""What a service does when the broker fails under it (crm_common.nameko.entrypoints):
a reply or an ack it cannot send loses that call, never the service; an event it cannot
publish stays in the outbox and the call that stored it succeeds.
(The whole outage, with real processes and a real broker stop: tests/e2e/test_resilience.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import kombu.exceptions
import pytest
from nameko.amqp.publish import Publisher
from nameko.exceptions import RpcTimeout
from nameko.messaging import QueueConsumer
from nameko.rpc import rpc as plain_nameko_rpc

from crm_common import events as ev
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.entrypoints import ReplyPublisher, SafeQueueConsumer
from crm_common.nameko.handlers import handles
from crm_common.nameko.mongo import MongoStore
from crm_common.nameko.outbox import EventOutbox
from support.things import ThingMade
from support.waiting import wait_for

from support import auth  # noqa: E402

auth.permit("producer_r.make")

REFUSED = kombu.exceptions.OperationalError("[Errno 111] ECONNREFUSED")


class Store:
    def __init__(self, db):
        self.db = db


class Producer(CrmService):
    name = "producer_r"
    OUTBOX_COLLECTIONS = ("things",)
    store = MongoStore(Store)

    @rpc
    def make(self, thing_id):
        staged = self.outbox.announce(ThingMade(id=thing_id))
        self.store.db.things.insert_one(ev.stage_on_insert({"_id": thing_id}, staged))
        self.outbox.publish(self.store.db.things, thing_id, staged)
        return staged[0]["event_id"]


class Consumer(CrmService):
    name = "consumer_r"
    store = MongoStore(Store)

    @handles("producer_r", "thing_made")
    def on_thing_made(self, event):
        self.store.db.seen.insert_one({"_id": event["data"]["id"]})


def refuse_when(monkeypatch, cls, lost):
    """Make ``cls.publish`` fail like an unreachable broker for the payloads ``lost`` picks."""
    real = cls.publish

    def publish(self, payload, **kwargs):
        if lost(payload):
            raise REFUSED
        return real(self, payload, **kwargs)

    monkeypatch.setattr(cls, "publish", publish)


def test_a_reply_the_broker_refuses_loses_the_call_not_the_service(make_config, start_service, rpc, monkeypatch):
    cfg = make_config("producer")
    container = start_service(Producer, cfg)
    refuse_when(monkeypatch, ReplyPublisher, lambda payload: payload.get("result") == "lost")
    with pytest.raises(RpcTimeout):
        rpc(cfg, timeout=2).producer_r.echo("lost")
    assert rpc(cfg).producer_r.echo("kept") == "kept"
    assert not container._died.ready()  # nameko kills a container whose worker thread raised


def test_an_event_the_broker_refuses_stays_in_the_outbox_and_the_call_succeeds(
        make_config, start_service, rpc, mongo_client, monkeypatch):
    pcfg, ccfg = make_config("producer"), make_config("consumer")
    start_service(Consumer, ccfg)
    start_service(Producer, pcfg)
    pdb, cdb = mongo_client[pcfg["MONGODB_DATABASE"]], mongo_client[ccfg["MONGODB_DATABASE"]]
    refuse_when(monkeypatch, Publisher, lambda payload: payload.get("type") == "thing_made")
    assert rpc(pcfg).producer_r.make("t1").startswith("evt")
    assert pdb.things.find_one({"_id": "t1"})[ev.OUTBOX_COUNT] == 1
    monkeypatch.undo()  # the broker is back: the relay timer publishes it
    wait_for(lambda: cdb.seen.find_one({"_id": "t1"}), timeout=20)
    wait_for(lambda: pdb.things.find_one({"_id": "t1"})[ev.OUTBOX_COUNT] == 0)


def test_replies_go_without_confirms_and_events_keep_them(make_config, start_service, rpc):
    cfg = make_config("producer")
    container = start_service(Producer, cfg)
    assert rpc(cfg).producer_r.echo("x") == "x"
    assert ReplyPublisher.transport_options["confirm_publish"] is False
    # nameko's shared options (events' publisher) were not switched off by the replies
    assert Publisher.transport_options.get("confirm_publish", True) is True
    outbox = next(d for d in container.dependencies if isinstance(d, EventOutbox))
    assert outbox.publisher.use_confirms is True


def test_an_ack_on_a_connection_that_just_died_is_left_to_the_broker():
    def ack():
        raise ConnectionResetError(104, "Connection reset by peer")

    # The channel still looks alive: the consumer thread has not noticed the loss yet.
    message = SimpleNamespace(channel=SimpleNamespace(connection=object()), ack=ack, requeue=ack)
    with pytest.raises(ConnectionResetError):
        QueueConsumer().ack_message(message)  # what used to kill the service
    SafeQueueConsumer().ack_message(message)
    SafeQueueConsumer().requeue_message(message)


class Mixed(CrmService):
    name = "mixed_r"
    store = MongoStore(Store)

    @plain_nameko_rpc
    def plain(self):
        return "answered by a second RpcConsumer on the same queue"


def test_a_plain_nameko_rpc_next_to_ours_is_refused_at_start(make_config, container_factory):
    container = container_factory(Mixed, make_config("mixed"))
    with pytest.raises(TypeError, match="plain use nameko's @rpc"):
        container.start()
