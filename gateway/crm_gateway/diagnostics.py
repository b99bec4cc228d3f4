"""crm.v1.Diagnostics, owned by the gateway: Echo reaches the named service's ``echo``
RPC, the full hop minus any work (the benchmark's floor). The services it can name
are the registry's."""
from __future__ import annotations

import base64

import grpc

from crm.v1 import diagnostics_pb2
from crm_common.errors import InvalidArgument

from .bridge import Bridge, Call, parse

SERVICE = diagnostics_pb2.DESCRIPTOR.services_by_name["Diagnostics"].full_name
MAX_PAYLOAD = 64 * 1024  # bytes; an echo proves a path, it is not a file transfer


def diagnostics_handler(bridge: Bridge) -> grpc.GenericRpcHandler:
    services = [s.name for s in bridge.registry.services]

    async def echo(call: Call, raw: bytes) -> bytes:
        request = parse(diagnostics_pb2.EchoRequest, raw)
        if request.service not in services:
            raise InvalidArgument.field("service", f"must be one of: {' '.join(services)}")
        if len(request.payload) > MAX_PAYLOAD:
            raise InvalidArgument.field("payload", f"must be at most {MAX_PAYLOAD} bytes")
        # nameko's RPC bodies are JSON: the bytes travel as base64 text and come back so.
        echoed = await call(request.service, "echo", {"payload": base64.b64encode(request.payload).decode("ascii")})
        return diagnostics_pb2.EchoReply(payload=base64.b64decode(echoed or "")).SerializeToString()

    return grpc.method_handlers_generic_handler(SERVICE, {"Echo": bridge.handler("Echo", echo)})
