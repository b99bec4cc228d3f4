"""crm.v1.Diagnostics -> every service's ``echo`` RPC: the full hop, minus any work."""
from __future__ import annotations

import base64

from crm.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from crm_common.validation import Violations

from .amqp_rpc import AmqpRpcClient
from .base import Call, Servicer, check, rpc_method

MAX_PAYLOAD = 64 * 1024  # bytes; an echo proves a path, it is not a file transfer


class DiagnosticsServicer(Servicer, diagnostics_pb2_grpc.DiagnosticsServicer):
    grpc_service = "crm.v1.Diagnostics"

    def __init__(self, rpc: AmqpRpcClient, *, services: dict[str, str], **kwargs):
        """``services`` maps the public names callers use ("contacts") to the nameko
        services behind them (the same unless tests rename them)."""
        super().__init__(rpc, **kwargs)
        self.services = dict(services)

    @rpc_method
    async def Echo(self, request: diagnostics_pb2.EchoRequest, call: Call):
        v = Violations()
        target = self.services.get(request.service)
        if target is None:
            v.add("service", f"must be one of: {' '.join(sorted(self.services))}")
        if len(request.payload) > MAX_PAYLOAD:
            v.add("payload", f"must be at most {MAX_PAYLOAD} bytes")
        check(v)
        # nameko's RPC bodies are JSON: the bytes travel as base64 text and come back so.
        echoed = await call(target, "echo", payload=base64.b64encode(request.payload).decode("ascii"))
        return diagnostics_pb2.EchoReply(payload=base64.b64decode(echoed or ""))
