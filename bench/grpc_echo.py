"""The gRPC floor: a grpc.aio server whose crm.v1.Diagnostics.Echo does nothing but
answer, so the same ghz call measures grpc.aio alone against the gateway's full hop.

    python -m bench.grpc_echo ADDR      prints "ready" once it serves
"""
from __future__ import annotations

import asyncio
import sys

import grpc

from crm.v1 import diagnostics_pb2, diagnostics_pb2_grpc


class Echo(diagnostics_pb2_grpc.DiagnosticsServicer):
    async def Echo(self, request, context):
        return diagnostics_pb2.EchoReply(payload=request.payload)


async def serve(addr: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    diagnostics_pb2_grpc.add_DiagnosticsServicer_to_server(Echo(), server)
    if not server.add_insecure_port(addr):
        raise SystemExit(f"cannot listen on {addr}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
