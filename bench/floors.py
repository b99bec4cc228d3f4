"""The floors every path is compared with, measured in the same run:

* gRPC echo: ghz -> a bare grpc.aio server (bench.grpc_echo); what grpc.aio costs.
* AMQP echo: pika client -> RabbitMQ -> pika responder, nameko-shaped messages
  (bench.amqp_echo); what the broker and pika cost.
* full hop: ghz -> gateway -> RabbitMQ -> the contacts service's no-op ``echo`` RPC
  -> back (crm.v1.Diagnostics.Echo); everything a real call pays except its work.
"""
from __future__ import annotations

import base64
import socket
import uuid
from contextlib import ExitStack, contextmanager
from typing import Iterator

from . import procs
from .load import GrpcCall

DIAGNOSTICS = ("crm.v1.Diagnostics.Echo", "crm/v1/diagnostics.proto")
PAYLOAD = base64.b64encode(b"x" * 16).decode()  # ghz's JSON form of bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_call(addr: str, service: str = "contacts") -> GrpcCall:
    method, proto = DIAGNOSTICS
    return GrpcCall(method, proto, {"service": service, "payload": PAYLOAD}, addr)


class Echoes:
    """The floors' own servers, running while the floors are measured."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.grpc_addr = f"127.0.0.1:{free_port()}"
        self.amqp_service = f"bench_echo_{uuid.uuid4().hex[:8]}"
        self.pids: dict[str, int] = {}

    @contextmanager
    def running(self) -> Iterator["Echoes"]:
        with ExitStack() as stack:
            grpc_server = stack.enter_context(procs.helper(procs.module_command("bench.grpc_echo", self.grpc_addr)))
            responder = stack.enter_context(procs.helper(procs.module_command(
                "bench.amqp_echo", "responder", self.amqp_uri, self.amqp_service)))
            self.pids = {"grpc echo server": grpc_server.pid, "amqp responder": responder.pid}
            yield self

    def amqp_spec(self) -> dict:
        return {"amqp_uri": self.amqp_uri, "service": self.amqp_service}
