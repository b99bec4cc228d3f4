"""crm.v1.Audit, owned by the gateway: ListAudit reads the named service's own trail
(its ``list_audit`` RPC, crm_common.audit); the services it can name are the registry's."""
from __future__ import annotations

import grpc

from crm.v1 import audit_pb2
from crm_common.errors import InvalidArgument

from . import wire
from .bridge import Bridge, Call, parse

SERVICE = audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name


def audit_handler(bridge: Bridge) -> grpc.GenericRpcHandler:
    services = [s.name for s in bridge.registry.services]

    async def list_audit(call: Call, raw: bytes) -> bytes:
        kwargs = wire.to_dict(parse(audit_pb2.ListAuditRequest, raw))
        service = kwargs.pop("service")
        if service not in services:
            raise InvalidArgument.field("service", f"must be one of: {' '.join(services)}")
        result = await call(service, "list_audit", kwargs)
        return wire.fill(audit_pb2.ListAuditResponse(), result or {}).SerializeToString()

    return grpc.method_handlers_generic_handler(
        SERVICE, {"ListAudit": bridge.handler("ListAudit", list_audit)})
