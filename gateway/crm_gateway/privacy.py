"""crm.v1.Privacy, owned by the gateway: ExportContactData asks every service of the
registry for what it holds about the contact (their ``export_contact`` RPC,
crm_common.privacy: each service decides the permission and records a refusal) and
answers with all of it."""
from __future__ import annotations

import asyncio

import grpc

from crm.v1 import privacy_pb2
from crm_common import clock
from crm_common.errors import NotFound

from . import wire
from .bridge import Bridge, Call, parse

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["Privacy"].full_name


def privacy_handler(bridge: Bridge) -> grpc.GenericRpcHandler:
    services = [s.name for s in bridge.registry.services]

    async def export(call: Call, raw: bytes) -> bytes:
        contact_id = parse(privacy_pb2.ExportContactDataRequest, raw).contact_id
        parts = await asyncio.gather(*(call(service, "export_contact", {"contact_id": contact_id})
                                       for service in services), return_exceptions=True)
        failed = next((part for part in parts if isinstance(part, BaseException)), None)
        if failed is not None:   # the first service's refusal (every one refused alike) or failure
            raise failed
        if not any(records for part in parts for records in (part.get("records") or {}).values()):
            raise NotFound(f"no service holds anything about contact {contact_id}", {"contact_id": contact_id})
        reply = {"contact_id": contact_id, "exported_at": clock.to_iso(clock.now()), "services": list(parts)}
        return wire.fill(privacy_pb2.ExportContactDataResponse(), reply).SerializeToString()

    return grpc.method_handlers_generic_handler(SERVICE, {"ExportContactData": bridge.handler("ExportContactData", export)})
