"""The registry of deployables (``registry.toml`` beside this module), and the names on
the bus derived from it.

``CRM_REGISTRY`` may point at another file (a test adding a throwaway service does).
Every consumer goes through :func:`load`; nothing else lists services.

Names on the bus, in one place (nameko's own where nameko decides them):

- RPC: exchange ``nameko-rpc``, queue ``rpc-<service>``, routing key ``<service>.<method>``
- events: exchange ``<source>.events``, routing key = event type, one durable queue per
  consuming service and event type ``evt-<source>-<type>--<consumer>`` (shared by its
  replicas)
- timeline facts: exchange ``crm.timeline``, routing key ``<source>.<kind>``, queue
  ``evt-timeline--<consumer>``
"""
from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("registry.toml")

RPC_EXCHANGE = "nameko-rpc"
TIMELINE = "timeline"
TIMELINE_EXCHANGE = "crm.timeline"
CLUSTER_METRICS_PORT = 9100

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_]*$")


def rpc_queue(service: str) -> str:
    return f"rpc-{service}"


def events_exchange(source: str) -> str:
    return f"{source}.events"


def event_queue(source: str, event_type: str, consumer: str) -> str:
    return f"evt-{source}-{event_type}--{consumer}"


def timeline_queue(consumer: str) -> str:
    return f"evt-{TIMELINE}--{consumer}"


def snake_case(camel: str) -> str:
    """``CreateContact`` -> ``create_contact`` (how a gRPC method names its nameko RPC)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


@dataclass(frozen=True)
class Subscription:
    source: str          # a service name, or "timeline"
    event_type: str      # "" for the timeline stream

    @classmethod
    def parse(cls, text: str) -> "Subscription":
        if text == TIMELINE:
            return cls(TIMELINE, "")
        source, _, event_type = text.partition(".")
        if not _NAME.match(source) or not _EVENT.match(event_type):
            raise ValueError(f"subscription {text!r}: expected '<service>.<event_type>' or 'timeline'")
        return cls(source, event_type)

    @property
    def is_timeline(self) -> bool:
        return self.source == TIMELINE

    def queue(self, consumer: str) -> str:
        return timeline_queue(consumer) if self.is_timeline else event_queue(self.source, self.event_type, consumer)

    def exchange(self) -> str:
        return TIMELINE_EXCHANGE if self.is_timeline else events_exchange(self.source)

    def __str__(self) -> str:
        return TIMELINE if self.is_timeline else f"{self.source}.{self.event_type}"


@dataclass(frozen=True)
class Deployable:
    name: str
    kind: str                      # "service" or "gateway"
    package: str
    path: str
    metrics_port: int
    grpc: tuple[str, ...] = ()
    module: str = ""               # services: "pkg.service:Class"
    publishes: tuple[str, ...] = ()
    timeline: bool = False
    subscribes: tuple[Subscription, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)   # RPC method -> permission
    secrets: tuple[str, ...] = ()  # settings that hold credentials: a Secret in a cluster, not the ConfigMap
    egress: tuple[int, ...] = ()   # TCP ports it opens to servers outside the cluster (a mail server ...)
    replicas: tuple[int, int] = (2, 6)
    grpc_port: int = 0             # gateway only
    origin: str = ""               # the declared name, when a test renamed it (Registry.renamed)

    @property
    def declared_name(self) -> str:
        """The name the declarations use (permissions, crm_common.access)."""
        return self.origin or self.name

    @property
    def database(self) -> str:
        """The service's own MongoDB database (``MONGODB_DATABASE`` overrides it)."""
        return "crm_" + self.name.replace("-", "_")

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue this service consumes (its RPC queue first); none for the gateway."""
        if self.kind != "service":
            return ()
        return (rpc_queue(self.name), *(s.queue(self.name) for s in self.subscribes))


@dataclass(frozen=True)
class Registry:
    gateway: Deployable
    services: tuple[Deployable, ...]
    path: Path

    @property
    def deployables(self) -> tuple[Deployable, ...]:
        return (*self.services, self.gateway)

    def service(self, name: str) -> Deployable:
        for s in self.services:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.services)
        raise KeyError(f"no service {name!r} in {self.path} (known: {known})")

    def deployable(self, name: str) -> Deployable:
        return self.gateway if name == self.gateway.name else self.service(name)

    def grpc_routes(self) -> dict[str, str]:
        """Public gRPC service full name -> the nameko service that backs it."""
        return {grpc: s.name for grpc, s in self.grpc_backers().items()}

    def grpc_backers(self) -> dict[str, "Deployable"]:
        """Public gRPC service full name -> the service that backs it."""
        return {grpc: s for s in self.services for grpc in s.grpc}

    def renamed(self, names: dict[str, str]) -> "Registry":
        """A copy whose services answer to other nameko names (tests run fakes beside the
        real services on one broker)."""
        return replace(self, services=tuple(replace(s, name=names[s.name], origin=s.declared_name)
                                            if s.name in names else s for s in self.services))

    def consumers_of(self, source: str, event_type: str) -> list[str]:
        return [s.name for s in self.services
                if any(sub.source == source and sub.event_type == event_type for sub in s.subscribes)]


def _deployable(name: str, kind: str, raw: dict) -> Deployable:
    known = {"module", "package", "path", "metrics_port", "grpc", "publishes", "timeline", "subscribes",
             "settings", "permissions", "secrets", "egress", "replicas", "grpc_port"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"registry: {name}: unknown key(s) {', '.join(sorted(unknown))}")
    if not _NAME.match(name):
        raise ValueError(f"registry: {name!r} is not a valid name (lower case, digits, '-')")
    if kind == "service" and ":" not in raw.get("module", ""):
        raise ValueError(f"registry: {name}: module must be 'package.module:Class'")
    lo, hi = raw.get("replicas", (2, 6))
    secrets = tuple(raw.get("secrets", ()))
    unknown_secrets = [k for k in secrets if k not in (raw.get("settings") or {})]
    if unknown_secrets:
        raise ValueError(f"registry: {name}: secrets {unknown_secrets} are not among its settings")
    egress = tuple(int(p) for p in raw.get("egress", ()))
    if any(not 0 < p < 65536 for p in egress):
        raise ValueError(f"registry: {name}: egress ports must be 1-65535: {egress}")
    return Deployable(
        name=name, kind=kind, package=raw["package"], path=raw["path"],
        metrics_port=int(raw["metrics_port"]), grpc=tuple(raw.get("grpc", ())),
        module=raw.get("module", ""), publishes=tuple(raw.get("publishes", ())),
        timeline=bool(raw.get("timeline", False)),
        subscribes=tuple(Subscription.parse(s) for s in raw.get("subscribes", ())),
        settings={k: str(v) for k, v in (raw.get("settings") or {}).items()},
        permissions={k: str(v) for k, v in (raw.get("permissions") or {}).items()},
        secrets=secrets, egress=egress, replicas=(int(lo), int(hi)), grpc_port=int(raw.get("grpc_port", 0)))


def parse(text: str, path: Path = DEFAULT_PATH) -> Registry:
    raw = tomllib.loads(text)
    gateway = _deployable("gateway", "gateway", raw["gateway"])
    services = tuple(_deployable(name, "service", body) for name, body in raw.get("services", {}).items())
    reg = Registry(gateway, services, path)
    _check(reg)
    return reg


def _check(reg: Registry) -> None:
    ports = [d.metrics_port for d in reg.deployables]
    if len(set(ports)) != len(ports):
        raise ValueError(f"registry: metrics ports must differ: {ports}")
    names = {s.name for s in reg.services}
    for s in reg.services:
        for sub in s.subscribes:
            if not sub.is_timeline and sub.source not in names:
                raise ValueError(f"registry: {s.name} subscribes to {sub} but there is no service {sub.source}")
            if not sub.is_timeline and sub.event_type not in reg.service(sub.source).publishes:
                raise ValueError(f"registry: {s.name} subscribes to {sub}, which {sub.source} does not publish")
    routes = [g for s in reg.services for g in s.grpc]
    if len(set(routes)) != len(routes):
        raise ValueError(f"registry: a gRPC service is backed by two services: {routes}")


def path() -> Path:
    return Path(os.environ.get("CRM_REGISTRY") or DEFAULT_PATH)


@lru_cache(maxsize=8)
def _load(p: Path, mtime: float) -> Registry:
    return parse(p.read_text(), p)


def load() -> Registry:
    p = path()
    return _load(p, p.stat().st_mtime)


def main(argv: list[str]) -> int:
    """``python -m crm_common.registry services|deployables|json``: for the Makefile and scripts."""
    reg = load()
    what = argv[1] if len(argv) > 1 else "services"
    if what == "services":
        print(" ".join(s.name for s in reg.services))
    elif what == "deployables":
        print(" ".join(d.name for d in reg.deployables))
    elif what == "json":
        def plain(d: Deployable) -> dict:
            return {**d.__dict__, "subscribes": [str(s) for s in d.subscribes], "queues": list(d.queues),
                    "database": d.database}
        print(json.dumps({"gateway": plain(reg.gateway), "services": [plain(s) for s in reg.services]}, indent=2))
    else:
        print(main.__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
