"""One contract, whoever calls: the gateway and an internal caller get the same answer
for the same invalid input, and a command retried with its idempotency key is applied once."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from crm.v1 import contacts_pb2, loyalty_pb2
from crm_gateway import wire
from helpers import stubs
from stack import rpc_call

BAD_CONTACT = contacts_pb2.Contact(
    given_name="Sara", emails=[contacts_pb2.Email(address="sara@")],
    phones=[contacts_pb2.Phone(number="0912 123 4567")], birthday="1990-02-30",
    consents={"fax": contacts_pb2.Consent(granted=True, source="x")})


def violations_through_the_gateway(call) -> list[tuple[str, str]]:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(exc.value).details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def violations_over_internal_rpc(stack, service, method, kwargs) -> list[tuple[str, str]]:
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, service, method, kwargs, timeout=10, token=stack.internal_token("admin"))
    error = exc.value.args[0]
    assert error["exc_type"] == "InvalidArgument"
    return [(v["field"], v["description"]) for v in error["exc_args"][1]["violations"]]


def test_the_same_invalid_field_gets_the_same_path_through_the_gateway_and_internal_rpc(stack, channel):
    contacts, loyalty = stubs(channel)
    request = contacts_pb2.CreateContactRequest(contact=BAD_CONTACT)
    public = violations_through_the_gateway(lambda: contacts.CreateContact(request, timeout=10))
    internal = violations_over_internal_rpc(stack, "contacts", "create_contact", wire.to_dict(request))
    assert public == internal
    assert [field for field, _ in public] == ["contact.emails[0].address", "contact.phones[0].number",
                                              "contact.birthday", "contact.consents.fax"]
    # an internal caller may leave out what it does not set: same rules, same paths
    assert violations_over_internal_rpc(stack, "contacts", "create_contact", {"contact": {
        "given_name": "Sara", "emails": [{"address": "sara@"}]}})[0] == public[0]

    earn = loyalty_pb2.EarnPointsRequest(contact_id="con_1", source="pos", source_ref="x" * 201,
                                         amount={"amount_minor": 0, "currency": "eur"})
    public = violations_through_the_gateway(lambda: loyalty.EarnPoints(earn, timeout=10))
    assert public == violations_over_internal_rpc(stack, "loyalty", "earn_points", wire.to_dict(earn))
    assert [f for f, _ in public] == ["source_ref", "amount.currency"]


def test_a_create_retried_with_its_idempotency_key_returns_the_first_result(channel):
    contacts, _ = stubs(channel)
    key = f"e2e-{uuid.uuid4().hex}"
    request = contacts_pb2.CreateContactRequest(idempotency_key=key, contact=contacts_pb2.Contact(
        given_name="Once", emails=[contacts_pb2.Email(address=f"{key}@example.com")]))
    with ThreadPoolExecutor(4) as pool:   # the retries race the first call
        results = list(pool.map(lambda _: _answer(lambda: contacts.CreateContact(request, timeout=10)), range(4)))
    created = [r for r in results if isinstance(r, contacts_pb2.Contact)]
    assert created and len({c.id for c in created}) == 1
    assert all(r == grpc.StatusCode.ABORTED for r in results if not isinstance(r, contacts_pb2.Contact))
    first = created[0]
    assert contacts.CreateContact(request, timeout=10) == first          # a later retry: the first answer
    found = contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text=key), timeout=10).contacts
    assert [c.id for c in found] == [first.id]                           # one contact, not two
    request.contact.given_name = "Twice"
    with pytest.raises(grpc.RpcError) as exc:                            # the key names that request only
        contacts.CreateContact(request, timeout=10)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in exc.value.details()
    # without a key the retry is a second request: the email is taken now
    with pytest.raises(grpc.RpcError) as exc:
        contacts.CreateContact(
            contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(
                given_name="Once", emails=[contacts_pb2.Email(address=f"{key}@example.com")])), timeout=10)
    assert exc.value.code() is grpc.StatusCode.ALREADY_EXISTS and first.id in exc.value.details()


def _answer(call):
    try:
        return call()
    except grpc.RpcError as exc:
        return exc.code()
