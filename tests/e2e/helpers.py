"""Small client-side helpers for the end-to-end tests (what an app would write)."""
from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import grpc

from support import waiting
from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc


def stubs(channel):
    return contacts_pb2_grpc.ContactsServiceStub(channel), loyalty_pb2_grpc.LoyaltyServiceStub(channel)


def new_contact(contacts, *, loyalty: bool = False, given="Sara", family="Ahmadi", **fields):
    tag = uuid.uuid4().hex[:10]
    contact = contacts_pb2.Contact(
        given_name=given, family_name=family,
        emails=[contacts_pb2.Email(address=f"{given.lower()}.{tag}@example.com", label="home", primary=True)],
        lifecycle_stage="customer", **fields)
    if loyalty:
        contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="e2e"))
    return contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    """Poll through the gateway; a gRPC error counts as 'not yet'."""
    return waiting.wait_for(predicate, timeout, interval, retry_on=(grpc.RpcError,))


def member_or_none(loyalty, contact_id):
    try:
        return loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact_id), timeout=5)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def money(amount_minor: int, currency: str = "EUR"):
    return common_pb2.Money(amount_minor=amount_minor, currency=currency)


def probe(port: int, path: str) -> int:
    """HTTP status of a process's ops endpoint (/healthz, /readyz, /metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0   # nothing listening (yet)
