"""Who may do what, through the real gateway and services: credentials (JWTs signed by
the stack's key, API keys), roles and scopes, masking, and a caller that skips the
gateway and talks to a service over AMQP directly."""
from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from crm.v1 import contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc
from crm_common import access
from crm_gateway import api_keys, client, devauth
from helpers import new_contact
from stack import rpc_call

pytestmark = pytest.mark.e2e


def code_and_details(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code(), exc.value.details()


def contacts_as(stack, token: str | None):
    channel = grpc.insecure_channel(stack.gateway_addr)
    return contacts_pb2_grpc.ContactsServiceStub(client.authorized(channel, token) if token else channel)


GET = contacts_pb2.GetContactRequest(contact_id="con_whatever")


@pytest.mark.parametrize("case", ["none", "expired", "other key", "unknown kid", "other audience", "other issuer",
                                  "garbage", "not bearer"])
def test_without_valid_credentials_every_call_is_unauthenticated_with_what_to_fix(stack, tmp_path, case):
    other = tmp_path / "other.pem"
    devauth.new_key_pair(other)
    tokens = {
        "none": None,
        "expired": stack.token("admin", expires_in=-120),   # beyond the 30 s of allowed clock skew
        "other key": stack.token("admin", key=other),
        "unknown kid": stack.token("admin", key=other, kid="someone-else"),
        "other audience": stack.token("admin", audience="another-api"),
        "other issuer": stack.token("admin", issuer="https://evil.example"),
        "garbage": "not-a-jwt",
    }
    if case == "not bearer":
        channel = grpc.insecure_channel(stack.gateway_addr)
        stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        code, details = code_and_details(lambda: stub.GetContact(GET, timeout=10,
                                                                   metadata=[("authorization", "Basic YWxpY2U6cHc=")]))
    else:
        code, details = code_and_details(lambda: contacts_as(stack, tokens[case]).GetContact(GET, timeout=10))
    assert code is grpc.StatusCode.UNAUTHENTICATED, details
    expected = {"none": "needs credentials", "expired": "expired", "other key": "signature does not verify",
                "unknown kid": "does not trust", "other audience": "another audience",
                "other issuer": "another issuer", "garbage": "not a JWT", "not bearer": "Bearer <token>"}[case]
    assert expected in details


def test_health_needs_no_credentials(stack):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(stack.gateway_addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_an_api_key_works_until_it_is_revoked_or_expires(stack):
    path = stack.auth.api_keys
    key = api_keys.create(path, "shop", ["integration"])
    stub = contacts_as(stack, key)
    created = new_contact(stub)
    assert stub.GetContact(contacts_pb2.GetContactRequest(contact_id=created.id), timeout=10).id == created.id
    api_keys.revoke(path, key.split("_")[1])
    time.sleep(1.2)   # the gateway re-reads the file at most once a second
    code, details = code_and_details(lambda: stub.GetContact(contacts_pb2.GetContactRequest(contact_id=created.id),
                                                             timeout=10))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    expired = api_keys.create(path, "old-job", ["integration"], expires="2020-01-01")
    time.sleep(1.2)
    code, details = code_and_details(lambda: contacts_as(stack, expired).GetContact(GET, timeout=10))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "expired" in details
    code, details = code_and_details(lambda: contacts_as(stack, key[:-3] + "xyz").GetContact(GET, timeout=10))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "unknown API key" in details


def test_roles_without_the_permission_are_denied_and_told_who_may(stack, channel, connect):
    contact = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel))
    marketer = contacts_pb2_grpc.ContactsServiceStub(connect("marketer"))
    code, details = code_and_details(lambda: marketer.EraseContact(
        contacts_pb2.EraseContactRequest(contact_id=contact.id), timeout=10))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "contacts.erase" in details and "admin" in details
    support = loyalty_pb2_grpc.LoyaltyServiceStub(connect("support_agent"))
    code, details = code_and_details(lambda: support.RedeemPoints(loyalty_pb2.RedeemPointsRequest(
        contact_id=contact.id, points=1, reason="x"), timeout=10))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "loyalty.redeem" in details
    nobody = contacts_pb2_grpc.ContactsServiceStub(connect("no-such-role"))
    code, details = code_and_details(lambda: nobody.GetContact(GET, timeout=10))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "roles: none" in details


def test_an_analyst_reads_contacts_with_personal_data_masked_and_cannot_change_them(stack, channel, connect):
    contact = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel))
    analyst = contacts_pb2_grpc.ContactsServiceStub(connect("analyst"))
    seen = analyst.GetContact(contacts_pb2.GetContactRequest(contact_id=contact.id), timeout=10)
    assert seen.display_name == contact.display_name and seen.id == contact.id
    assert contact.emails[0].address.split("@")[1] == seen.emails[0].address.split("@")[1]
    assert seen.emails[0].address.startswith(contact.emails[0].address[0] + "•••@")
    assert all(p.number.endswith("•••") and len(p.number) <= 4 for p in seen.phones)
    found = analyst.SearchContacts(contacts_pb2.SearchContactsRequest(text=contact.family_name), timeout=10)
    assert contact.id in [c.id for c in found.contacts]
    assert all("•••@" in c.emails[0].address for c in found.contacts if c.emails)
    code, _ = code_and_details(lambda: analyst.UpdateContact(contacts_pb2.UpdateContactRequest(
        contact_id=contact.id, expected_version=contact.version, contact=contacts_pb2.Contact(given_name="X"),
        update_mask=field_mask_pb2.FieldMask(paths=["given_name"])), timeout=10))
    assert code is grpc.StatusCode.PERMISSION_DENIED


def test_a_sales_rep_sees_and_changes_only_their_own_contacts_and_a_manager_their_teams(stack, connect):
    alice = contacts_pb2_grpc.ContactsServiceStub(connect("sales_rep", subject="alice", team="north"))
    bob = contacts_pb2_grpc.ContactsServiceStub(connect("sales_rep", subject="bob", team="north"))
    carol = contacts_pb2_grpc.ContactsServiceStub(connect("sales_rep", subject="carol", team="south"))
    north_lead = contacts_pb2_grpc.ContactsServiceStub(connect("sales_manager", subject="nina", team="north"))
    mine = new_contact(alice)
    assert mine.owner == "alice"                      # a rep's new contact is theirs
    family = mine.family_name
    for other in (bob, carol):
        code, details = code_and_details(lambda: other.GetContact(
            contacts_pb2.GetContactRequest(contact_id=mine.id), timeout=10))
        assert code is grpc.StatusCode.NOT_FOUND, details
        code, _ = code_and_details(lambda: other.UpdateContact(contacts_pb2.UpdateContactRequest(
            contact_id=mine.id, expected_version=mine.version, contact=contacts_pb2.Contact(given_name="Taken"),
            update_mask=field_mask_pb2.FieldMask(paths=["given_name"])), timeout=10))
        assert code is grpc.StatusCode.NOT_FOUND
        assert other.SearchContacts(contacts_pb2.SearchContactsRequest(text=family), timeout=10).contacts == []
        assert other.SearchContacts(contacts_pb2.SearchContactsRequest(owner="alice"), timeout=10).contacts == []
    assert {c.owner for c in alice.SearchContacts(contacts_pb2.SearchContactsRequest(text=family),
                                                  timeout=10).contacts} == {"alice"}
    assert north_lead.GetContact(contacts_pb2.GetContactRequest(contact_id=mine.id), timeout=10).id == mine.id
    south_lead = contacts_pb2_grpc.ContactsServiceStub(connect("sales_manager", subject="sam", team="south"))
    code, _ = code_and_details(lambda: south_lead.GetContact(contacts_pb2.GetContactRequest(contact_id=mine.id),
                                                             timeout=10))
    assert code is grpc.StatusCode.NOT_FOUND
    code, details = code_and_details(lambda: alice.UpdateContact(contacts_pb2.UpdateContactRequest(
        contact_id=mine.id, expected_version=mine.version, contact=contacts_pb2.Contact(owner="bob"),
        update_mask=field_mask_pb2.FieldMask(paths=["owner"])), timeout=10))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "owner must be 'alice'" in details


def test_skipping_the_gateway_meets_the_same_rules(stack, connect):
    """Internal calls are authenticated too: a service believes only a principal signed
    with CRM_INTERNAL_SECRET, which the broker's users do not have."""
    mine = new_contact(contacts_pb2_grpc.ContactsServiceStub(connect("sales_rep", subject="dana")))
    get = {"contact_id": mine.id}
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, "contacts", "get_contact", get, timeout=10)
    assert exc.value.args[0]["exc_type"] == "Unauthenticated"
    forged = access.mint(access.Principal("user:mallory", ("admin",)), "a-secret-mallory-made-up-herself-0123")
    for method, kwargs in (("get_contact", get), ("erase_contact", get)):
        with pytest.raises(RuntimeError) as exc:
            rpc_call(stack.amqp_uri, "contacts", method, kwargs, timeout=10, token=forged)
        assert exc.value.args[0]["exc_type"] == "Unauthenticated"
    other_rep = stack.internal_token("sales_rep", subject="user:erin")
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, "contacts", "get_contact", get, timeout=10, token=other_rep)
    assert exc.value.args[0]["exc_type"] == "NotFound"
    marketer = stack.internal_token("marketer")
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, "contacts", "erase_contact", get, timeout=10, token=marketer)
    assert exc.value.args[0]["exc_type"] == "PermissionDenied"
    assert rpc_call(stack.amqp_uri, "contacts", "get_contact", get, timeout=10,
                    token=stack.internal_token("sales_rep", subject="user:dana"))["id"] == mine.id
    assert rpc_call(stack.amqp_uri, "contacts", "ping", timeout=10)["ok"] is True   # readiness stays open


def _listening() -> dict[int, set[str]]:
    """Port -> the addresses something listens on (/proc/net/tcp and tcp6, state 0A; an
    IPv4-mapped IPv6 address, as gRPC binds, counts as its IPv4 address)."""
    import ipaddress

    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            ip_hex, port_hex = fields[1].split(":")
            raw = b"".join(bytes.fromhex(ip_hex[i:i + 8])[::-1] for i in range(0, len(ip_hex), 8))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.setdefault(int(port_hex, 16), set()).add(str(ip))
    return found


def test_every_local_listener_binds_loopback_and_metrics_answer_only_their_paths(stack):
    from helpers import probe
    ports = [int(stack.gateway_addr.rsplit(":", 1)[1]), *stack.metrics_ports.values(), 5682, 25682, 27217]
    listening = _listening()
    for port in ports:
        assert listening.get(port) == {"127.0.0.1"}, (port, listening.get(port))
    assert probe(stack.metrics_ports["contacts"], "/metrics") == 200
    assert probe(stack.metrics_ports["contacts"], "/anything-else") == 404


def test_each_process_is_its_own_broker_user_and_may_touch_only_its_part_of_the_bus(stack):
    """As in a cluster (deploy/k8s, crm_common.broker): the contacts process's broker user
    cannot take another service's requests, publish another service's events, or read
    a queue that is not its own; its own queue it may."""
    import pika
    from pika.exceptions import ChannelClosedByBroker

    uri = stack.amqp_uri_of("contacts")
    assert uri.split("//")[1].startswith("contacts:")

    def refused(action) -> bool:
        conn = pika.BlockingConnection(pika.URLParameters(uri))
        try:
            action(conn.channel())
            return False
        except ChannelClosedByBroker as exc:
            return exc.reply_code == 403
        finally:
            if conn.is_open:
                conn.close()

    assert refused(lambda ch: ch.basic_get("rpc-sales"))
    assert refused(lambda ch: ch.basic_get("evt-contacts-contact_created--loyalty"))
    assert refused(lambda ch: ch.exchange_declare("sales.events", "topic", durable=True))
    assert refused(lambda ch: (ch.confirm_delivery(), ch.basic_publish("sales.events", "order_paid", b"{}")))
    assert not refused(lambda ch: ch.queue_declare("rpc-contacts", passive=True))
