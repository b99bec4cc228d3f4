"""The gRPC gateway: grpc.aio server for crm.v1 + health + reflection, AMQP RPC to services.

Which public services exist and which nameko service backs each comes from the
registry (crm_common.registry); every RPC goes through the generic bridge.

Environment (crm_common.config; defaults in the registry's [gateway.settings]):
  GATEWAY_ADDR      listen address (default 127.0.0.1:<registry grpc_port>)
  AMQP_URI          broker (default amqp://guest:guest@127.0.0.1:5682/)
  METRICS_PORT      /metrics, /healthz, /readyz port (default: the registry's; 0 disables)
  GATEWAY_DEFAULT_TIMEOUT  AMQP timeout when the caller sets no deadline (default 10 s)
  GATEWAY_MAX_TIMEOUT      cap on the AMQP timeout (default 30 s)
  GATEWAY_GRACE     seconds in-flight calls get on SIGTERM/SIGINT (default 10)
  GATEWAY_ACCESS_LOG  1: one JSON line per call (0 = off)
  GATEWAY_MAX_MESSAGE_BYTES  request and reply size limit (RESOURCE_EXHAUSTED beyond)
  GATEWAY_RATE_PER_SECOND, GATEWAY_RATE_BURST  per-principal limit (crm_gateway.ratelimit)
  GATEWAY_TLS_CERT, GATEWAY_TLS_KEY  PEM files: serve TLS (plaintext without them)
  GATEWAY_REQUIRE_TLS  1: refuse to start without a certificate (the prod overlay)
  AUTH_*            how callers are authenticated (crm_gateway.auth, crm_gateway.api_keys)
  CRM_INTERNAL_SECRET  signs the internal tokens the services verify (crm_common.access)
  LOG_LEVEL         default INFO
"""
from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crm_common import access, config, logs, probes, registry
from crm_common.registry import Registry

from . import metrics
from .amqp_rpc import AmqpRpcClient
from .audit_trail import SERVICE as AUDIT, audit_handler
from .auth import Authenticator
from .bridge import Bridge, Guard, load_api
from .diagnostics import SERVICE as DIAGNOSTICS, diagnostics_handler
from .privacy import SERVICE as PRIVACY, privacy_handler
from .ratelimit import RateLimiter

log = logging.getLogger("crm_gateway.server")


def guard_from_settings() -> Guard:
    policy = access.policy()
    limiter = RateLimiter(policy, setting("GATEWAY_RATE_PER_SECOND"), setting("GATEWAY_RATE_BURST"))
    return Guard(Authenticator.from_settings(), access.TokenCache(config.env("CRM_INTERNAL_SECRET")), limiter)


def tls_credentials() -> grpc.ServerCredentials | None:
    cert, key = (config.setting("gateway", n).strip() for n in ("GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY"))
    if bool(cert) != bool(key):
        raise RuntimeError("set both GATEWAY_TLS_CERT and GATEWAY_TLS_KEY, or neither")
    if not cert:
        if config.setting("gateway", "GATEWAY_REQUIRE_TLS") in ("1", "true", "yes"):
            raise RuntimeError("GATEWAY_REQUIRE_TLS is on but no GATEWAY_TLS_CERT/GATEWAY_TLS_KEY is set: "
                               "refusing to serve plaintext")
        return None
    with open(cert, "rb") as c, open(key, "rb") as k:
        return grpc.ssl_server_credentials([(k.read(), c.read())])


class Gateway:
    """The assembled gateway; ``await start()``, ``await stop()``. Used by main() and tests."""

    def __init__(self, addr: str = "127.0.0.1:50051", amqp_uri: str | None = None, *,
                 default_timeout: float = 10.0, max_timeout: float = 30.0, reg: Registry | None = None,
                 guard: Guard | None = None, max_message_bytes: int = 4 * 1024 * 1024,
                 tls: grpc.ServerCredentials | None = None):
        load_api()
        self.addr = addr
        self.tls = tls
        self.registry = reg or registry.load()
        self.rpc = AmqpRpcClient(amqp_uri or config.amqp_uri(), name="gateway",
                                 on_state_change=self._on_broker_state)
        self.bridge = Bridge(self.rpc, self.registry, guard or guard_from_settings(), default_timeout=default_timeout,
                             max_timeout=max_timeout, max_reply_bytes=max_message_bytes)
        self.service_names = (*self.bridge.routed_services(), DIAGNOSTICS, AUDIT, PRIVACY)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[metrics.MetricsInterceptor()],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", max_message_bytes),
                     ("grpc.max_send_message_length", max_message_bytes)])
        self.server.add_generic_rpc_handlers([*self.bridge.generic_handlers(), diagnostics_handler(self.bridge),
                                              audit_handler(self.bridge), privacy_handler(self.bridge)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            self.service_names + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
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
        for name in self.service_names:
            res = self.health.set(name, status)
            if asyncio.iscoroutine(res):
                asyncio.ensure_future(res)

    async def start(self) -> int:
        self.port = (self.server.add_secure_port(self.addr, self.tls) if self.tls
                     else self.server.add_insecure_port(self.addr))
        if not self.port:
            raise RuntimeError(f"cannot listen on {self.addr}")
        # Overall health ("") is SERVING while the process runs; the crm.v1 services'
        # statuses follow the broker connection (NOT_SERVING while it is down).
        await self._set_health("", health_pb2.HealthCheckResponse.SERVING)
        for name in self.service_names:
            await self._set_health(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        connected = await self.rpc.start(wait=5.0)
        log.info("gateway listening", extra={"addr": self.addr, "port": self.port, "tls": bool(self.tls),
                                              "amqp_connected": connected})
        return self.port

    async def stop(self, grace: float = 10.0) -> None:
        await self._set_health("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        await self.rpc.close()


def setting(name: str) -> float:
    return float(config.setting("gateway", name))


async def serve() -> None:
    reg = registry.load()
    addr = config.env("GATEWAY_ADDR", f"127.0.0.1:{reg.gateway.grpc_port}")
    gw = Gateway(addr, config.amqp_uri(), default_timeout=setting("GATEWAY_DEFAULT_TIMEOUT"),
                 max_timeout=setting("GATEWAY_MAX_TIMEOUT"), reg=reg,
                 max_message_bytes=int(setting("GATEWAY_MAX_MESSAGE_BYTES")), tls=tls_credentials())
    metrics_port = config.metrics_port(default=reg.gateway.metrics_port)
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
    grace = setting("GATEWAY_GRACE")
    log.info("gateway stopping", extra={"grace_s": grace})
    await gw.stop(grace)
    log.info("gateway stopped")


def main() -> None:
    access = config.setting("gateway", "GATEWAY_ACCESS_LOG") not in ("0", "false", "no")
    logs.setup(config.log_level(), quiet=() if access else ("crm_gateway.access",))
    asyncio.run(serve())


if __name__ == "__main__":
    main()
