"""No input breaks the gateway: hypothesis builds messages for every public RPC from its
descriptor (numbers at the limits of their type, timestamps outside the representable
range, strings with control characters and of any length, long lists, foreign page
tokens, ids of records that do not exist) and sends them with and without credentials.
No reply may be INTERNAL or UNKNOWN, and the gateway keeps serving.

FUZZ_EXAMPLES sets the examples per RPC (the suite's default is small and always the same;
`make fuzz` runs more, with a fresh FUZZ_SEED that a failure's report names)."""
from __future__ import annotations

import os

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, seed, settings, strategies as st

from crm_common import registry
from crm_gateway.bridge import load_api
from crm_gateway.audit_trail import SERVICE as AUDIT
from crm_gateway.diagnostics import SERVICE as DIAGNOSTICS
from crm_gateway.privacy import SERVICE as PRIVACY

pytestmark = pytest.mark.e2e

load_api()
POOL = descriptor_pool.Default()
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEED = os.environ.get("FUZZ_SEED", "")   # empty: the same examples every run (the suite's)
METHODS = [m for name in [*registry.load().grpc_routes(), DIAGNOSTICS, AUDIT, PRIVACY]
           for m in POOL.FindServiceByName(name).methods]
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

_INT_RANGES = {
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}
# Ids of records that exist (a member with points, its company), so requests also get past
# the lookup to the arithmetic and the writes; filled by the ``admin`` fixture.
REAL_IDS: list[str] = []
# Strings as clients send them: real ids, real-looking ids and words, controls and odd
# Unicode, long.
_TEXT = st.one_of(
    st.deferred(lambda: st.sampled_from(REAL_IDS or ["con_none"])),
    st.sampled_from(["", "con_0000000000000000000000000", "mem_x", "sara", "a@b.c", "+98 912 ۱۲۳ ۴۵۶۷",
                     "eyJpZCI6ICJ4In0", "!!notbase64", "contact.given_name", "*", "$gt", "{\"$ne\": 1}",
                     "IR", "EUR", "loyalty", "email", "customer"]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1f), max_size=10),
    st.integers(0, 3).map(lambda k: "x" * (10 ** k * 7)),
)


def _scalar(field):
    kind = field.type
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        return st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2]), st.integers(lo, hi))
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == F.TYPE_FLOAT else 64)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_STRING:
        return _TEXT
    if kind == F.TYPE_BYTES:
        return st.binary(max_size=200)
    if kind == F.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-5, 1000))
    raise AssertionError(field.full_name)


def _fill(draw, msg, depth: int) -> None:
    for field in msg.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(field.message_type.fields_by_name["key"]))
                if value_field.message_type is not None:
                    if depth < 3:
                        _fill(draw, getattr(msg, field.name)[key], depth + 1)
                else:
                    getattr(msg, field.name)[key] = draw(_scalar(value_field))
        elif field.is_repeated:
            count = draw(st.sampled_from([0, 1, 2, 5, 300]))
            target = getattr(msg, field.name)
            if field.message_type is not None:
                for _ in range(count if depth < 3 else 0):
                    _fill(draw, target.add(), depth + 1)
            else:
                target.extend([draw(_scalar(field))] * count)
        elif field.message_type is not None:
            if depth < 3:
                child = getattr(msg, field.name)
                child.SetInParent()
                _fill(draw, child, depth + 1)
        else:
            setattr(msg, field.name, draw(_scalar(field)))


@st.composite
def messages(draw, descriptor):
    msg = message_factory.GetMessageClass(descriptor)()
    _fill(draw, msg, 0)
    return msg


@pytest.fixture(scope="module")
def admin(stack, connect):
    from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc
    from helpers import new_contact

    channel = connect("admin", subject="fuzzer")
    contacts, loyalty = contacts_pb2_grpc.ContactsServiceStub(channel), loyalty_pb2_grpc.LoyaltyServiceStub(channel)
    member = new_contact(contacts, family="Fuzz")
    loyalty.Enroll(loyalty_pb2.EnrollRequest(contact_id=member.id), timeout=10)
    loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(contact_id=member.id, source="pos", source_ref="fuzz-1",
                                                     amount=common_pb2.Money(amount_minor=50_000, currency="EUR")),
                       timeout=10)
    company = contacts.CreateCompany(contacts_pb2.CreateCompanyRequest(
        company=contacts_pb2.Company(name="Fuzz Ltd")), timeout=10)
    REAL_IDS[:] = [member.id, company.id]
    return channel


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_no_generated_request_is_internal_or_unknown(stack, admin, method):
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_cls = message_factory.GetMessageClass(method.input_type)
    with_token = admin.unary_unary(path, request_serializer=request_cls.SerializeToString,
                                   response_deserializer=lambda b: b)
    anonymous_channel = grpc.insecure_channel(stack.gateway_addr)
    anonymous = anonymous_channel.unary_unary(path, request_serializer=request_cls.SerializeToString,
                                              response_deserializer=lambda b: b)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not SEED, database=None,
              suppress_health_check=list(HealthCheck))
    @given(messages(method.input_type))
    def check(request):
        for call, anonymous_call in ((with_token, False), (anonymous, True)):
            try:
                call(request, timeout=15)
                assert not anonymous_call, "answered without credentials"
            except grpc.RpcError as exc:
                assert exc.code() not in BROKEN, f"{path}: {exc.code().name}: {exc.details()}\n{request}"
                if anonymous_call:
                    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED, exc.details()

    if SEED:
        check = seed(int(SEED))(check)
    try:
        check()
    finally:
        anonymous_channel.close()
    with grpc.insecure_channel(stack.gateway_addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
