"""What ops and tooling rely on: health, reflection, metrics on every process."""
from __future__ import annotations

import urllib.request
import uuid

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from crm.v1 import contacts_pb2
from helpers import member_or_none, new_contact, probe, stubs, wait_for


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_both_services(channel):
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"crm.v1.ContactsService", "crm.v1.LoyaltyService", "grpc.health.v1.Health"} <= names


def test_every_process_is_alive_and_ready(stack):
    for name, port in stack.metrics_ports.items():
        assert (name, probe(port, "/healthz"), probe(port, "/readyz")) == (name, 200, 200)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_every_process_exposes_metrics_with_the_agreed_names(stack, channel):
    contacts, _ = stubs(channel)
    contact = new_contact(contacts)
    contacts.GetContact(contacts_pb2.GetContactRequest(contact_id=contact.id), timeout=5)

    gateway = scrape(stack.metrics_ports["gateway"])
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="GetContact",grpc_service="crm.v1.ContactsService"' \
        in gateway.replace(", ", ",") or 'grpc_method="GetContact"' in gateway
    assert "grpc_server_handling_seconds_bucket" in gateway

    svc = scrape(stack.metrics_ports["contacts"])
    assert 'crm_rpc_requests_total{method="get_contact",outcome="ok",service="contacts"}' in svc
    assert "crm_rpc_duration_seconds_bucket" in svc
    assert 'crm_events_published_total{event="contact_created",service="contacts"}' in svc

    loyalty = scrape(stack.metrics_ports["loyalty"])
    assert 'crm_events_handled_total{event="contact_created",outcome="ok",service="loyalty"}' in loyalty


def test_the_request_id_follows_a_request_through_every_service_and_handler(stack, channel):
    contacts, loyalty = stubs(channel)
    rid = f"e2e-{uuid.uuid4().hex}"
    contact = contacts_pb2.Contact(given_name="Trace", emails=[contacts_pb2.Email(address=f"{rid}@example.com")])
    contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="e2e"))
    created, call = contacts.CreateContact.with_call(contacts_pb2.CreateContactRequest(contact=contact),
                                                     metadata=(("x-request-id", rid),), timeout=10)
    assert dict(call.trailing_metadata())["x-request-id"] == rid
    wait_for(lambda: member_or_none(loyalty, created.id))

    def lines(name, *words):
        text = (stack.run_dir / "log" / f"{name}.log").read_text()
        return [line for line in text.splitlines() if rid in line and all(w in line for w in words)]

    # gateway -> contacts.create_contact -> loyalty's handler of contact_created (which
    # enrols) -> contacts' handler of the timeline fact member_enrolled: one id all the way.
    wait_for(lambda: lines("gateway", "CreateContact") and lines("contacts", '"method": "create_contact"')
             and lines("loyalty", '"entrypoint": "event"') and lines("contacts", '"method": "on_timeline_fact"'))
