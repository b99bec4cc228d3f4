"""The gRPC gateway: grpc.aio server for crm.v1 + health + reflection, AMQP RPC to services.

Environment:
  GATEWAY_ADDR      listen address (default 127.0.0.1:50051)
  AMQP_URI          broker (default crm_common.config's amqp://guest:guest@127.0.0.1:5682/)
  METRICS_PORT      Prometheus /metrics port (default 9100; 0 disables)
  GATEWAY_DEFAULT_TIMEOUT  AMQP timeout when the caller sets no deadline (default 10 s)
  GATEWAY_MAX_TIMEOUT      cap on the AMQP timeout (default 30 s)
  GATEWAY_GRACE     seconds in-flight calls get on SIGTERM/SIGINT (default 10)
  LOG_LEVEL         default INFO; GATEWAY_ACCESS_LOG=0 silences the per-call lines
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crm.v1 import (contacts_pb2, contacts_pb2_grpc, diagnostics_pb2, diagnostics_pb2_grpc, loyalty_pb2,
                    loyalty_pb2_grpc)
from crm_common import config, probes

from . import logs, metrics
from .amqp_rpc import AmqpRpcClient
from .base import DEFAULT_TIMEOUT, MAX_TIMEOUT
from .contacts import ContactsServicer
from .diagnostics import DiagnosticsServicer
from .loyalty import LoyaltyServicer

log = logging.getLogger("crm_gateway.server")

SERVICE_NAMES = (
    contacts_pb2.DESCRIPTOR.services_by_name["ContactsService"].full_name,
    loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name,
    diagnostics_pb2.DESCRIPTOR.services_by_name["Diagnostics"].full_name,
)


class Gateway:
    """The assembled gateway; ``await start()``, ``await stop()``. Used by main() and tests."""

    def __init__(self, addr: str = "127.0.0.1:50051", amqp_uri: str | None = None, *,
                 default_timeout: float = DEFAULT_TIMEOUT, max_timeout: float = MAX_TIMEOUT,
                 contacts_service: str = "contacts", loyalty_service: str = "loyalty"):
        self.addr = addr
        self.rpc = AmqpRpcClient(amqp_uri or config.amqp_uri(), name="gateway",
                                 on_state_change=self._on_broker_state)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[metrics.MetricsInterceptor()],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4 * 1024 * 1024)])
        contacts_pb2_grpc.add_ContactsServiceServicer_to_server(
            ContactsServicer(self.rpc, default_timeout=default_timeout, max_timeout=max_timeout,
                             service=contacts_service), self.server)
        loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server(
            LoyaltyServicer(self.rpc, default_timeout=default_timeout, max_timeout=max_timeout,
                            service=loyalty_service), self.server)
        diagnostics_pb2_grpc.add_DiagnosticsServicer_to_server(
            DiagnosticsServicer(self.rpc, default_timeout=default_timeout, max_timeout=max_timeout,
                                services={"contacts": contacts_service, "loyalty": loyalty_service}),
            self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                             reflection.SERVICE_NAME), self.server)
        self.port = 0

    async def _set_health(self, service: str, status) -> None:
        res = self.health.set(service, status)
        if asyncio.iscoroutine(res):
            await res

    def _on_broker_state(self, connected: bool) -> None:
        metrics.AMQP_CONNECTED.set(1 if connected else 0)
        status = (health_pb2.HealthCheckResponse.SERVING if connected
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in SERVICE_NAMES:
            res = self.health.set(name, status)
            if asyncio.iscoroutine(res):
                asyncio.ensure_future(res)

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(self.addr)
        if not self.port:
            raise RuntimeError(f"cannot listen on {self.addr}")
        # Overall health ("") is SERVING while the process runs; the crm.v1 services'
        # statuses follow the broker connection (NOT_SERVING while it is down).
        await self._set_health("", health_pb2.HealthCheckResponse.SERVING)
        for name in SERVICE_NAMES:
            await self._set_health(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        connected = await self.rpc.start(wait=5.0)
        log.info("gateway listening", extra={"addr": self.addr, "port": self.port,
                                              "amqp_connected": connected})
        return self.port

    async def stop(self, grace: float = 10.0) -> None:
        await self._set_health("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        await self.rpc.close()


async def serve() -> None:
    addr = os.environ.get("GATEWAY_ADDR", "127.0.0.1:50051")
    gw = Gateway(addr, config.amqp_uri(),
                 default_timeout=float(os.environ.get("GATEWAY_DEFAULT_TIMEOUT", DEFAULT_TIMEOUT)),
                 max_timeout=float(os.environ.get("GATEWAY_MAX_TIMEOUT", MAX_TIMEOUT)))
    metrics_port = config.metrics_port(default=9100)
    if metrics_port:
        # /metrics, /healthz, /readyz (ready = connected to the broker); Kubernetes may
        # use these or the native gRPC health checks, which follow the same state.
        probes.add_check("broker", lambda: None if gw.rpc.connected else "AMQP connection is down")
        probes.serve(metrics_port)
        log.info("metrics listening", extra={"metrics_port": metrics_port})
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    grace = float(os.environ.get("GATEWAY_GRACE", "10"))
    log.info("gateway stopping", extra={"grace_s": grace})
    await gw.stop(grace)
    log.info("gateway stopped")


def main() -> None:
    logs.setup()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
