"""Nothing is lost when a service is down; the gateway survives a broker restart.
These stop parts of the private stack, so they run last (pytest keeps file order)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import grpc
import pytest

from crm.v1 import contacts_pb2
from helpers import member_or_none, new_contact, probe, stubs, wait_for
from stack import rpc_call
from support.infra import rabbitmqctl


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
    # crm-service execs nameko: the pid we signal is nameko itself, not a wrapper.
    argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"/nameko") for arg in argv[:2]) and b"run" in argv, argv
    answer = {}
    call = threading.Thread(target=lambda: answer.update(
        result=rpc_call(stack.amqp_uri, "contacts", "echo", {"payload": "in flight", "delay": 1.5}, timeout=10)))
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


@pytest.mark.skipif("AMQP_URI" in os.environ, reason="needs the project's own broker to stop and start it")
def test_broker_outage_is_unavailable_then_recovers_without_restarting_the_gateway(stack, channel):
    contacts, _ = stubs(channel)
    contact = new_contact(contacts)
    get = contacts_pb2.GetContactRequest(contact_id=contact.id)
    rabbitmqctl("stop_app")
    try:
        with pytest.raises(grpc.RpcError) as exc:
            contacts.GetContact(get, timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        # Unready (out of the load balancer), but alive: a restart would not help.
        for name in ("gateway", "contacts", "loyalty"):
            port = stack.metrics_ports[name]
            assert (name, probe(port, "/readyz"), probe(port, "/healthz")) == (name, 503, 200)
    finally:
        rabbitmqctl("start_app")
    recovered = wait_for(lambda: contacts.GetContact(get, timeout=2), timeout=60, interval=0.5)
    assert recovered.id == contact.id
    wait_for(lambda: all(probe(port, "/readyz") == 200 for port in stack.metrics_ports.values()))
    assert stack.procs["gateway"].poll() is None  # the same gateway process, never restarted
