"""crm.v1.Diagnostics.Echo through the real stack: gateway -> broker -> each service's echo."""
from __future__ import annotations

import os

import grpc
import pytest

from crm_common import registry

from crm.v1 import diagnostics_pb2, diagnostics_pb2_grpc

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", [s.name for s in registry.load().services])
def test_echo_returns_the_payload_from_each_running_service(channel, service):
    payload = os.urandom(2048)  # random bytes: not valid UTF-8, not JSON-safe as they are
    reply = diagnostics_pb2_grpc.DiagnosticsStub(channel).Echo(
        diagnostics_pb2.EchoRequest(service=service, payload=payload), timeout=10)
    assert reply.payload == payload


def test_echo_to_an_unknown_service_is_invalid_argument(channel):
    with pytest.raises(grpc.RpcError) as ei:
        diagnostics_pb2_grpc.DiagnosticsStub(channel).Echo(
            diagnostics_pb2.EchoRequest(service="billing", payload=b"x"), timeout=10)
    assert ei.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "service" in ei.value.details()
