"""Nothing is lost when a service is down; a broker outage under load is survived by
every process, and every event stored around it is delivered afterwards.
These stop parts of a private stack, so they run last (pytest keeps file order)."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pymongo
import pytest

from crm.v1 import contacts_pb2, diagnostics_pb2, diagnostics_pb2_grpc
from helpers import member_or_none, new_contact, probe, stubs, wait_for
from crm_gateway import client  # noqa: E402
from stack import rpc_call
from support.infra import RABBITMQ_SERVER, private_rabbitmq
from crm_common import registry

SERVICES = [s.name for s in registry.load().services]


def test_events_published_while_loyalty_is_down_are_not_lost(stack, channel):
    contacts, loyalty = stubs(channel)
    stack.stop("loyalty")
    try:
        created = [new_contact(contacts, loyalty=True, given=f"Down{i}").id for i in range(50)]
    finally:
        stack.start("loyalty")
        stack.wait_ready("loyalty")
    wait_for(lambda: all(member_or_none(loyalty, cid) for cid in created), timeout=60, interval=0.5)
    assert all(member_or_none(loyalty, cid).status == "active" for cid in created)


def test_sigterm_lets_a_service_finish_the_call_in_flight(stack):
    proc = stack.procs["contacts"]
    # crm-service runs nameko's runner in its own process: the pid we signal is the service, not a wrapper.
    argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1].endswith(b"/crm-service") and argv[2] == b"contacts", argv
    answer = {}
    call = threading.Thread(target=lambda: answer.update(
        result=rpc_call(stack.amqp_uri, "contacts", "echo", {"payload": "in flight", "delay": 1.5}, timeout=10,
                        token=stack.internal_token("admin"))))
    call.start()
    time.sleep(0.5)  # the call is being worked on
    try:
        stack.stop("contacts")  # SIGTERM, then waits for the exit
        call.join(10)
        assert answer == {"result": "in flight"}
        assert proc.returncode == 0
    finally:
        stack.start("contacts")
        stack.wait_ready("contacts")


OUTAGE_SECONDS = 8      # longer than a held call plus kombu's ~2 s of publish retries
HELD_CALL_SECONDS = 2   # workers busy when the broker goes: their replies cannot be sent


@pytest.fixture(scope="module")
def outage_stack(start_stack, tmp_path_factory):
    """A stack on a RabbitMQ node of its own: the outage test stops that broker, never
    the shared one that benchmarks and other test runs are using."""
    with private_rabbitmq(tmp_path_factory.mktemp("rabbitmq")) as broker:
        with start_stack(broker.amqp_uri, broker.env) as st:
            yield st, broker


class Load:
    """Calls kept in flight through the gateway until stopped: reads of one contact and
    creations of consenting contacts (named ``family``), each a loyalty enrolment to come."""

    def __init__(self, contacts, get, family: str, readers: int = 8, creators: int = 4):
        self.contacts, self.get, self.family = contacts, get, family
        self.codes: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(self._read,)) for _ in range(readers)]
        self._threads += [threading.Thread(target=self._loop, args=(self._create,)) for _ in range(creators)]

    def _read(self):
        self.contacts.GetContact(self.get, timeout=5)

    def _create(self):
        new_contact(self.contacts, loyalty=True, given="Load", family=self.family)

    def _loop(self, call):
        while not self._stop.is_set():
            try:
                call()
                self.codes["OK"] += 1
            except grpc.RpcError as exc:
                self.codes[exc.code().name] += 1
                time.sleep(0.05)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(15)


def _held_call(amqp_uri: str, service: str, token: str) -> None:
    try:  # its connection dies with the broker; what matters is the worker it holds
        rpc_call(amqp_uri, service, "echo", {"payload": "held", "delay": HELD_CALL_SECONDS}, timeout=10, token=token)
    except Exception:  # noqa: BLE001
        pass


@pytest.mark.skipif(not RABBITMQ_SERVER.exists(), reason="needs a local rabbitmq-server for a broker of its own")
def test_broker_outage_under_load_is_unavailable_then_everything_resumes_without_restarts(outage_stack):
    st, broker = outage_stack
    pids = {name: proc.pid for name, proc in st.procs.items()}
    family = f"Outage{uuid.uuid4().hex[:8]}"

    def same_processes_running():
        exited = {name: proc.returncode for name, proc in st.procs.items() if proc.poll() is not None}
        assert not exited, f"exited during the outage: {exited}; see {st.run_dir}/log"

    with grpc.insecure_channel(st.gateway_addr) as plain:
        channel = client.authorized(plain, st.token("admin"))
        contacts, loyalty = stubs(channel)
        diagnostics = diagnostics_pb2_grpc.DiagnosticsStub(channel)
        get = contacts_pb2.GetContactRequest(contact_id=new_contact(contacts).id)
        with Load(contacts, get, family) as load:
            wait_for(lambda: load.codes["OK"] >= 50, timeout=30)
            held = [threading.Thread(target=_held_call, args=(st.amqp_uri, name, st.internal_token("admin")))
                    for name in SERVICES for _ in range(3)]
            for t in held:
                t.start()
            time.sleep(0.5)  # the held calls are being worked on
            before = new_contact(contacts, loyalty=True, given="Before", family=family)
            broker.ctl("stop_app")
            down_since = time.monotonic()
            try:
                with pytest.raises(grpc.RpcError) as exc:
                    contacts.GetContact(get, timeout=5)
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                # Unready (out of the load balancer), but alive: a restart would not help.
                for name in st.metrics_ports:
                    port = st.metrics_ports[name]
                    assert (name, probe(port, "/readyz"), probe(port, "/healthz")) == (name, 503, 200)
                time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
            finally:
                broker.ctl("start_app")
                for t in held:
                    t.join(15)
        assert load.codes["UNAVAILABLE"] > 0, load.codes

        def answers():
            same_processes_running()
            return contacts.GetContact(get, timeout=2)

        assert wait_for(answers, timeout=60, interval=0.5).id == get.contact_id
        for name in SERVICES:
            echo = diagnostics_pb2.EchoRequest(service=name, payload=b"back")
            assert wait_for(lambda: diagnostics.Echo(echo, timeout=2), timeout=30).payload == b"back"
        wait_for(lambda: all(probe(port, "/readyz") == 200 for port in st.metrics_ports.values()), timeout=30)

        # Every consenting contact stored around the outage is enrolled, also those whose
        # create call failed after the write: events wait in the outbox for the relay.
        stored = pymongo.MongoClient(st.mongodb_url)[f"{st.database_prefix}contacts"]["contacts"]

        def all_enrolled():
            same_processes_running()
            ids = [doc["_id"] for doc in stored.find({"family_name": family}, {"_id": 1})]
            return ids if all(member_or_none(loyalty, cid) for cid in ids) else None

        enrolled = wait_for(all_enrolled, timeout=90, interval=1)
        stored.database.client.close()
        assert before.id in enrolled

    same_processes_running()
    assert {name: proc.pid for name, proc in st.procs.items()} == pids  # none was restarted
