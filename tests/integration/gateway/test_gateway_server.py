"""The gateway end to end over the real RabbitMQ, with fake nameko services behind it.

Fake services get unique names (``contacts_<uuid>``) so real services running on the same
broker are never disturbed.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc
import pika
import pytest

subprocess.run([str(Path(__file__).resolve().parents[3] / "scripts" / "gen-proto.sh")], check=True)

from google.protobuf import field_mask_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from grpc_status import rpc_status  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc  # noqa: E402
from crm_common.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,  # noqa: E402
                               VersionConflict)
from crm_common import registry  # noqa: E402
from crm_gateway.server import Gateway  # noqa: E402
from support import auth  # noqa: E402
from support.fake_nameko import FakeNamekoService  # noqa: E402

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5682/")
pytestmark = pytest.mark.integration

try:
    pika.BlockingConnection(pika.URLParameters(AMQP_URI)).close()
except Exception:  # pragma: no cover
    pytest.skip(f"RabbitMQ not reachable at {AMQP_URI}", allow_module_level=True)

CONTACT = {
    "id": "con_01", "version": 3, "created_at": "2026-11-25T20:00:00.000Z",
    "updated_at": "2026-11-25T20:00:01.500Z", "given_name": "Sara", "family_name": "Ahmadi",
    "display_name": "Sara Ahmadi",
    "emails": [{"address": "sara@example.com", "label": "work", "primary": True}],
    "phones": [{"number": "+989121234567", "label": "mobile"}],
    "company_id": None, "birthday": "1990-04-01", "gender": None, "locale": "fa-IR",
    "address": {"line1": "1 Tea St", "line2": "", "city": "Tehran", "region": "", "postal_code": "", "country": "IR"},
    "tags": ["vip"], "lifecycle_stage": "customer", "owner": None,
    "custom_fields": {"shoe_size": 42, "newsletter_topic": "tea", "ratio": 0.5, "vip": True},
    "consents": {"email": {"granted": True, "source": "web-form", "at": "2026-11-25T20:00:00.000Z"}, "sms": None},
    "erased": False,
}
MEMBER = {"contact_id": "con_01", "member_id": "mem_01", "status": "active", "tier": "bronze",
          "balance": 120, "points_earned_12m": 340, "enrolled_at": "2026-11-25T20:00:00.000Z",
          "display_name": "Sara Ahmadi", "version": 4, "next_expiry": None}


def get_contact(contact_id):
    if contact_id == "con_missing":
        raise NotFound(f"contact {contact_id} not found")
    if contact_id == "con_boom":
        raise RuntimeError("secret database password in traceback")
    if contact_id == "con_slow":
        time.sleep(1.0)
    return dict(CONTACT, id=contact_id)


def create_contact(contact, idempotency_key):
    if (contact["emails"] or [{}])[0].get("address") == "taken@example.com":
        raise AlreadyExists("email taken@example.com is taken", {"existing_id": "con_taken"})
    if not contact.get("given_name"):
        raise InvalidArgument("contact.given_name: is required",
                              violations=[{"field": "contact.given_name", "description": "is required"}])
    return dict(CONTACT, given_name=contact["given_name"])


def update_contact(contact_id, expected_version, contact, update_mask, idempotency_key):
    if expected_version != 3:
        raise VersionConflict("contact changed", {"current_version": 3})
    return dict(CONTACT, version=4, **{path: contact[path] for path in update_mask})


def redeem_points(contact_id, points, reason, idempotency_key):
    if points > 120:
        raise FailedPrecondition("balance 120 is short of 500", {"balance": 120})
    entry = {"id": "led_1", "contact_id": contact_id, "kind": "redeem", "points": -points,
             "balance_after": 120 - points, "source": "", "source_ref": "", "reason": reason,
             "amount": None, "occurred_at": "2026-11-25T20:00:00Z"}
    return {"entry": entry, "member": dict(MEMBER, balance=120 - points)}


def earn_points(contact_id, source, source_ref, amount, idempotency_key):
    entry = {"id": "led_2", "contact_id": contact_id, "kind": "earn", "points": amount["amount_minor"] // 100,
             "balance_after": 150, "source": source, "source_ref": source_ref, "reason": "",
             "amount": amount, "occurred_at": "2026-11-25T20:00:00Z"}
    return {"entry": entry, "member": MEMBER}


class GatewayThread:
    def __init__(self, **kw):
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        names = self.kw.pop("names", {})
        self.kw.setdefault("guard", auth.guard())
        self.gw = Gateway("127.0.0.1:0", AMQP_URI, reg=registry.load().renamed(names), **self.kw)
        self.port = self.loop.run_until_complete(self.gw.start())
        self._started.set()
        self.loop.run_forever()

    def __enter__(self):
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.gw.stop(0.5), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def stack():
    suffix = uuid.uuid4().hex[:10]
    contacts = FakeNamekoService(AMQP_URI, f"contacts_{suffix}", {
        "get_contact": get_contact, "create_contact": create_contact, "update_contact": update_contact,
        "search_contacts": lambda **kw: {"contacts": [CONTACT, dict(CONTACT, id="con_02")], "next_page_token": "t2"},
    })
    loyalty = FakeNamekoService(AMQP_URI, f"loyalty_{suffix}", {
        "redeem_points": redeem_points, "earn_points": earn_points, "get_member": lambda contact_id: MEMBER,
    })
    with contacts, loyalty, GatewayThread(names={"contacts": contacts.service, "loyalty": loyalty.service}) as gw:
        channel = auth.channel(f"127.0.0.1:{gw.port}")
        yield {"channel": channel, "contacts": contacts, "loyalty": loyalty,
               "c": contacts_pb2_grpc.ContactsServiceStub(channel),
               "l": loyalty_pb2_grpc.LoyaltyServiceStub(channel)}
        channel.close()


def _rich(err: grpc.RpcError):
    return rpc_status.from_call(err)


def test_get_contact_round_trip_and_call_id(stack):
    c = stack["c"].GetContact(contacts_pb2.GetContactRequest(contact_id="con_01"), timeout=5)
    assert c.id == "con_01" and c.version == 3 and c.display_name == "Sara Ahmadi"
    assert c.created_at.ToJsonString() == "2026-11-25T20:00:00Z"
    assert c.updated_at.ToJsonString() == "2026-11-25T20:00:01.500Z"
    assert c.emails[0].address == "sara@example.com" and c.emails[0].primary
    assert c.custom_fields["shoe_size"].int_value == 42
    assert c.custom_fields["newsletter_topic"].string_value == "tea"
    assert c.custom_fields["ratio"].double_value == 0.5
    assert c.custom_fields["vip"].bool_value is True
    assert c.consents["email"].granted and "sms" not in c.consents
    assert c.company_id == "" and c.address.city == "Tehran"
    method, kwargs, headers = stack["contacts"].requests[-1]
    assert (method, kwargs) == ("get_contact", {"contact_id": "con_01"})
    [call_id] = headers["nameko.call_id_stack"]
    assert call_id.startswith("gateway.GetContact.")


def test_a_request_reaches_the_service_as_every_field_by_name(stack):
    stack["c"].SearchContacts(contacts_pb2.SearchContactsRequest(tag="vip"), timeout=5)
    assert stack["contacts"].requests[-1][:2] == ("search_contacts", {
        "text": "", "tag": "vip", "lifecycle_stage": "", "owner": "", "page_size": 0, "page_token": ""})


@pytest.mark.parametrize("raw", [
    b"\x0a\x05\xff\xfe\xfd\xfc\xfb",   # contact_id: 5 bytes that are not UTF-8
    b"\x0a\x50abc",                     # says 80 bytes follow, 3 do
    b"\xff\xff\xff",                     # not a field tag at all
])
def test_bytes_that_are_not_a_request_are_invalid_argument_and_reach_no_service(stack, raw):
    before = len(stack["contacts"].requests)
    call = stack["channel"].unary_unary("/crm.v1.ContactsService/GetContact")
    with pytest.raises(grpc.RpcError) as ei:
        call(raw, timeout=5)
    assert ei.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid crm.v1.GetContactRequest" in ei.value.details()
    assert len(stack["contacts"].requests) == before


def test_service_errors_map_to_statuses(stack):
    c = stack["c"]
    with pytest.raises(grpc.RpcError) as ei:
        c.GetContact(contacts_pb2.GetContactRequest(contact_id="con_missing"), timeout=5)
    assert ei.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:
        c.CreateContact(contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(
            given_name="A", emails=[contacts_pb2.Email(address="taken@example.com")])), timeout=5)
    assert ei.value.code() is grpc.StatusCode.ALREADY_EXISTS and "con_taken" in ei.value.details()
    info = error_details_pb2.ErrorInfo()
    assert _rich(ei.value).details[0].Unpack(info) and info.metadata["existing_id"] == "con_taken"
    with pytest.raises(grpc.RpcError) as ei:
        c.CreateContact(contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(family_name="B")), timeout=5)
    assert ei.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "contact.given_name" in ei.value.details()
    bad = error_details_pb2.BadRequest()
    assert _rich(ei.value).details[0].Unpack(bad) and bad.field_violations[0].field == "contact.given_name"
    with pytest.raises(grpc.RpcError) as ei:
        stack["l"].RedeemPoints(loyalty_pb2.RedeemPointsRequest(contact_id="con_01", points=500, reason="tea"),
                                timeout=5)
    assert ei.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_unexpected_error_is_internal_without_leak(stack):
    with pytest.raises(grpc.RpcError) as ei:
        stack["c"].GetContact(contacts_pb2.GetContactRequest(contact_id="con_boom"), timeout=5)
    assert ei.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in ei.value.details() and "Traceback" not in ei.value.details()
    assert "call id gateway.GetContact." in ei.value.details()


def test_update_contact_with_field_mask(stack):
    req = contacts_pb2.UpdateContactRequest(
        contact_id="con_01", expected_version=3,
        contact=contacts_pb2.Contact(given_name="Sarah", tags=["a", "b"], family_name="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["given_name", "tags", "owner"]))
    c = stack["c"].UpdateContact(req, timeout=5)
    assert c.version == 4 and c.given_name == "Sarah" and list(c.tags) == ["a", "b"]
    method, kwargs, _ = stack["contacts"].requests[-1]
    assert kwargs["update_mask"] == ["given_name", "tags", "owner"] and kwargs["idempotency_key"] == ""
    assert kwargs["contact"]["family_name"] == "ignored" and kwargs["contact"]["owner"] == ""
    req.expected_version = 2
    with pytest.raises(grpc.RpcError) as ei:
        stack["c"].UpdateContact(req, timeout=5)
    assert ei.value.code() is grpc.StatusCode.ABORTED


def test_search_and_loyalty_shapes(stack):
    res = stack["c"].SearchContacts(contacts_pb2.SearchContactsRequest(tag="vip"), timeout=5)
    assert [c.id for c in res.contacts] == ["con_01", "con_02"] and res.next_page_token == "t2"
    r = stack["l"].EarnPoints(loyalty_pb2.EarnPointsRequest(
        contact_id="con_01", source="pos", source_ref="r1",
        amount=common_pb2.Money(amount_minor=12345, currency="EUR")), timeout=5)
    assert r.entry.points == 123 and r.entry.amount.amount_minor == 12345 and r.member.balance == 120
    assert not r.member.HasField("next_expiry")
    r = stack["l"].RedeemPoints(loyalty_pb2.RedeemPointsRequest(contact_id="con_01", points=20, reason="tea"),
                                timeout=5)
    assert r.entry.points == -20 and not r.entry.HasField("amount") and r.member.balance == 100


def test_deadline_becomes_amqp_timeout(stack):
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        stack["c"].GetContact(contacts_pb2.GetContactRequest(contact_id="con_slow"), timeout=0.3)
    assert ei.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 0.9


def test_stopping_drains_calls_in_flight_and_refuses_new_ones():
    """What SIGTERM does (server.serve -> Gateway.stop(GATEWAY_GRACE)): a call already
    running finishes with its answer; a call arriving during the drain is refused."""
    suffix = uuid.uuid4().hex[:8]
    with FakeNamekoService(AMQP_URI, f"contacts_{suffix}", {"get_contact": get_contact}) as fake:
        gw = GatewayThread(names={"contacts": fake.service}).__enter__()
        channel = auth.channel(f"127.0.0.1:{gw.port}")
        stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        slow = stub.GetContact.future(contacts_pb2.GetContactRequest(contact_id="con_slow"), timeout=10)
        time.sleep(0.3)  # the slow call (1 s at the service) is in flight
        stopping = asyncio.run_coroutine_threadsafe(gw.gw.stop(5), gw.loop)
        time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetContact(contacts_pb2.GetContactRequest(contact_id="con_01"), timeout=2)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert slow.result().id == "con_slow"
        stopping.result(10)
        gw.loop.call_soon_threadsafe(gw.loop.stop)
        channel.close()


def test_service_not_running_is_unavailable():
    with GatewayThread(names={"contacts": f"nobody_{uuid.uuid4().hex[:8]}"}) as gw, \
            auth.channel(f"127.0.0.1:{gw.port}") as channel:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as ei:
            contacts_pb2_grpc.ContactsServiceStub(channel).GetContact(
                contacts_pb2.GetContactRequest(contact_id="con_01"), timeout=5)
        assert ei.value.code() is grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 1.0


def test_method_not_found_is_internal(stack):
    with pytest.raises(grpc.RpcError) as ei:
        stack["l"].ListLedger(loyalty_pb2.ListLedgerRequest(contact_id="con_01"), timeout=5)
    # the fake loyalty has no list_ledger: nameko's MethodNotFound -> INTERNAL
    assert ei.value.code() is grpc.StatusCode.INTERNAL
    with pytest.raises(grpc.RpcError) as ei:
        stack["c"].GetCompany(contacts_pb2.GetCompanyRequest(company_id="cmp_1"), timeout=5)
    assert ei.value.code() is grpc.StatusCode.INTERNAL


def test_health_reflection_and_metrics(stack):
    health = health_pb2_grpc.HealthStub(stack["channel"])
    for name in ("", "crm.v1.ContactsService", "crm.v1.LoyaltyService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(stack["channel"])
    [resp] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert {"crm.v1.ContactsService", "crm.v1.LoyaltyService", "grpc.health.v1.Health"} <= names
    labels = {"grpc_type": "unary", "grpc_service": "crm.v1.ContactsService", "grpc_method": "GetContact"}
    ok = REGISTRY.get_sample_value("grpc_server_handled_total", dict(labels, grpc_code="OK"))
    nf = REGISTRY.get_sample_value("grpc_server_handled_total", dict(labels, grpc_code="NotFound"))
    assert ok and ok >= 1 and nf and nf >= 1
    assert REGISTRY.get_sample_value("grpc_server_started_total", labels) >= ok + nf
    assert REGISTRY.get_sample_value("grpc_server_handling_seconds_count", labels) >= ok + nf


def test_a_burst_from_one_principal_is_limited_with_a_retry_hint_and_others_are_not():
    suffix = uuid.uuid4().hex[:8]
    with FakeNamekoService(AMQP_URI, f"contacts_{suffix}", {"get_contact": get_contact}) as fake, \
            GatewayThread(names={"contacts": fake.service}, guard=auth.guard(per_second=20, burst=50)) as gw:
        addr = f"127.0.0.1:{gw.port}"
        noisy = contacts_pb2_grpc.ContactsServiceStub(auth.channel(addr, "support_agent", subject="noisy"))
        calm = contacts_pb2_grpc.ContactsServiceStub(auth.channel(addr, "support_agent", subject="calm"))
        denied_before = REGISTRY.get_sample_value("crm_gateway_denied_total", {"reason": "RESOURCE_EXHAUSTED"})
        request = contacts_pb2.GetContactRequest(contact_id="con_01")
        calls = [noisy.GetContact.future(request, timeout=30) for _ in range(1000)]
        codes, limited = {}, None
        for call in calls:
            try:
                call.result()
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as err:
                codes[err.code().name] = codes.get(err.code().name, 0) + 1
                limited = err
        assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert 50 <= codes["OK"] < 200, codes     # the burst, plus what refilled while the burst ran
        assert "rate limit of 20 calls/s" in limited.details() and "retry in" in limited.details()
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in _rich(limited).details) and retry.retry_delay.ToNanoseconds() > 0
        assert REGISTRY.get_sample_value("crm_gateway_denied_total",
                                         {"reason": "RESOURCE_EXHAUSTED"}) - denied_before == codes["RESOURCE_EXHAUSTED"]
        assert calm.GetContact(request, timeout=5).id == "con_01"   # another principal is not affected
        assert len([r for r in fake.requests if r[0] == "get_contact"]) == codes["OK"] + 1  # refused never left


def test_a_request_over_the_size_limit_is_resource_exhausted():
    with GatewayThread(names={"contacts": f"nobody_{uuid.uuid4().hex[:8]}"}, max_message_bytes=64 * 1024) as gw, \
            auth.channel(f"127.0.0.1:{gw.port}") as channel:
        big = contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(given_name="x" * 100_000))
        with pytest.raises(grpc.RpcError) as ei:
            contacts_pb2_grpc.ContactsServiceStub(channel).CreateContact(big, timeout=5)
        assert ei.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in ei.value.details()


def test_the_principal_reaches_the_service_as_a_signed_internal_token(stack):
    stack["c"].GetContact(contacts_pb2.GetContactRequest(contact_id="con_01"), timeout=5)
    _, _, headers = stack["contacts"].requests[-1]
    from crm_common import access
    principal = access.InternalTokens(auth.AUTH.secret).verify(headers["nameko.crm_auth"])
    assert principal.subject == "user:test-admin" and principal.roles == ("admin",) and principal.via == "gateway"
