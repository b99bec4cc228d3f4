"""The registry, the public API (proto), the services' code and the docs say the same
thing: a service's RPCs are its gRPC methods with the same fields, its handlers are its
declared subscriptions, its events module declares what it says it publishes."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
subprocess.run([str(ROOT / "scripts" / "gen-proto.sh")], check=True)

from google.protobuf import descriptor_pool  # noqa: E402

from crm_common import registry  # noqa: E402
from crm_common.events import Event, declared_events  # noqa: E402
from crm_common.registry import Subscription  # noqa: E402
from crm_common.nameko.base import event_handlers, rpc_methods  # noqa: E402
from crm_gateway.bridge import load_api  # noqa: E402

load_api()
REG = registry.load()
SERVICES = [s.name for s in REG.services]


def service_class(name):
    module, _, cls = REG.service(name).module.partition(":")
    return getattr(importlib.import_module(module), cls)


def rpcs(cls) -> dict[str, type]:
    return {name: member.request_model for name, member in rpc_methods(cls).items()}


@pytest.mark.parametrize("name", SERVICES)
def test_every_grpc_method_is_an_rpc_whose_model_has_exactly_the_request_fields(name):
    methods = rpcs(service_class(name))
    for grpc_service in REG.service(name).grpc:
        desc = descriptor_pool.Default().FindServiceByName(grpc_service)
        for method in desc.methods:
            target = registry.snake_case(method.name)
            assert target in methods, f"{grpc_service}/{method.name} routes to {name}.{target}, which does not exist"
            proto_fields = {f.name for f in method.input_type.fields}
            assert set(methods[target].model_fields) == proto_fields, f"{name}.{target} vs {method.input_type.full_name}"


@pytest.mark.parametrize("name", SERVICES)
def test_handlers_are_the_declared_subscriptions(name):
    cls = service_class(name)
    handled = {Subscription(*getattr(m, "handles_event")) if getattr(m, "handles_event")[0] != "timeline"
               else Subscription.parse("timeline")
               for m in event_handlers(cls).values()}
    assert handled == set(REG.service(name).subscribes)


@pytest.mark.parametrize("name", SERVICES)
def test_the_events_module_declares_what_the_registry_says_is_published(name):
    pkg = REG.service(name).module.split(".")[0]
    declared = declared_events(importlib.import_module(f"{pkg}.events"))
    assert set(declared) == set(REG.service(name).publishes)
    timeline = [t for t, cls in declared.items() if cls.timeline is not Event.timeline]
    assert bool(timeline) == REG.service(name).timeline, "registry `timeline` must match the events' timeline()"


def test_docs_are_generated_from_the_declarations():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]


@pytest.mark.parametrize("name", SERVICES)
def test_no_service_strips_an_entrypoint_of_the_base_class(name):
    """Overriding a decorated method of CrmService (relay_outbox, ping ...) without its
    decorator silently removes that timer or RPC; services use the hooks instead."""
    from crm_common.nameko.base import CrmService

    cls = service_class(name)
    for attr, member in vars(CrmService).items():
        if getattr(member, "nameko_entrypoints", None):
            assert getattr(getattr(cls, attr), "nameko_entrypoints", None), f"{name}.{attr} lost its entrypoint"
