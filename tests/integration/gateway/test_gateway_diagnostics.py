"""crm.v1.Diagnostics.Echo over the real RabbitMQ, with fake nameko services behind the gateway."""
from __future__ import annotations

import base64
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

# test_gateway_server generates the gRPC code, skips without a broker and runs the gateway.
from test_gateway_server import AMQP_URI, GatewayThread

from crm.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from crm_gateway.diagnostics import MAX_PAYLOAD
from support import auth
from support.fake_nameko import FakeNamekoService

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def diag():
    suffix = uuid.uuid4().hex[:10]
    echo = lambda payload=None: payload  # noqa: E731 - what CrmService.echo does
    contacts = FakeNamekoService(AMQP_URI, f"contacts_{suffix}", {"echo": echo})
    loyalty = FakeNamekoService(AMQP_URI, f"loyalty_{suffix}", {"echo": lambda payload=None: "bm90IG1pbmU="})
    with contacts, loyalty, GatewayThread(names={"contacts": contacts.service, "loyalty": loyalty.service}) as gw:
        channel = auth.channel(f"127.0.0.1:{gw.port}")
        yield {"channel": channel, "contacts": contacts, "loyalty": loyalty,
               "stub": diagnostics_pb2_grpc.DiagnosticsStub(channel)}
        channel.close()


def test_echo_returns_every_byte_through_the_named_service(diag):
    payload = bytes(range(256)) * 4  # not UTF-8: proves the bytes survive nameko's JSON
    reply = diag["stub"].Echo(diagnostics_pb2.EchoRequest(service=diag["contacts"].service, payload=payload), timeout=5)
    assert reply.payload == payload
    method, kwargs, headers = diag["contacts"].requests[-1]
    assert method == "echo" and base64.b64decode(kwargs["payload"]) == payload
    assert headers["nameko.call_id_stack"][0].startswith("gateway.Echo.")
    # every service of the registry is reachable; its (fake) answer comes back
    reply = diag["stub"].Echo(diagnostics_pb2.EchoRequest(service=diag["loyalty"].service, payload=b"x"), timeout=5)
    assert reply.payload == b"not mine" and diag["loyalty"].requests[-1][0] == "echo"


def test_empty_and_largest_payloads_pass(diag):
    name = diag["contacts"].service
    assert diag["stub"].Echo(diagnostics_pb2.EchoRequest(service=name), timeout=5).payload == b""
    big = b"\xff" * MAX_PAYLOAD
    assert diag["stub"].Echo(diagnostics_pb2.EchoRequest(service=name, payload=big), timeout=5).payload == big


@pytest.mark.parametrize("service,payload,field", [
    ("sales-x", b"x", "service"),                  # not a service of the registry
    ("", b"x", "service"),
    ("contacts", b"x", "service"),                 # the real one is not this gateway's (renamed) registry's
    (None, b"x" * (MAX_PAYLOAD + 1), "payload"),
])
def test_bad_requests_are_invalid_argument_and_reach_no_service(diag, service, payload, field):
    service = diag["contacts"].service if service is None else service
    before = len(diag["contacts"].requests) + len(diag["loyalty"].requests)
    with pytest.raises(grpc.RpcError) as ei:
        diag["stub"].Echo(diagnostics_pb2.EchoRequest(service=service, payload=payload), timeout=5)
    assert ei.value.code() is grpc.StatusCode.INVALID_ARGUMENT and field in ei.value.details()
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(ei.value).details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == [field]
    assert len(diag["contacts"].requests) + len(diag["loyalty"].requests) == before


def test_diagnostics_is_in_health_and_reflection(diag):
    health = health_pb2_grpc.HealthStub(diag["channel"])
    assert health.Check(health_pb2.HealthCheckRequest(service="crm.v1.Diagnostics"), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(diag["channel"])
    [resp] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="crm.v1.Diagnostics")]), timeout=5))
    assert resp.file_descriptor_response.file_descriptor_proto  # ghz/grpcurl can describe it
