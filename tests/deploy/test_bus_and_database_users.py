"""The broker and database accounts (components rabbitmq and mongodb) give each deployable
exactly its own part, as the registry declares it: tested name by name against every queue
and exchange the registry's services use, plus the queues they could have but do not."""
import base64
import re
from urllib.parse import urlsplit

import pytest
from conftest import variant_names

from crm_common import registry
from invariants import REGISTRY
from kube import of_kind

OPS = ("configure", "write", "read")
REPLY_QUEUE = f"rpc.reply-{REGISTRY.gateway.name}-0a1b2c3d"


def reply_queue(service: str) -> str:
    """The reply queue of a service's calls to others (nameko: rpc.reply-<service>-<uuid4>)."""
    return f"rpc.reply-{service}-8c9d2f6e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"


def bus_names() -> set[str]:
    """Every exchange and queue on the bus, and the event queues each service could have
    (any published event type, consumed by any service), subscribed or not."""
    names = {registry.RPC_EXCHANGE, registry.TIMELINE_EXCHANGE, REPLY_QUEUE}
    for s in REGISTRY.services:
        names |= {registry.events_exchange(s.name), *s.queues, registry.timeline_queue(s.name), reply_queue(s.name)}
        for source in REGISTRY.services:
            names |= {registry.event_queue(source.name, t, s.name) for t in source.publishes}
    return names


def expected(op: str, d: registry.Deployable, name: str) -> bool:
    """What d's broker user may do to name, in RabbitMQ's terms: declare = configure,
    publish = write on the exchange, bind = write on the queue + read on the exchange,
    consume = read on the queue."""
    if d.kind == "gateway":
        return name in (registry.RPC_EXCHANGE, REPLY_QUEUE)
    subscribed = {sub.exchange() for sub in d.subscribes}
    if name in d.queues or name in (registry.RPC_EXCHANGE, reply_queue(d.name)):
        return True
    if name == registry.events_exchange(d.name):   # its own; read too when it consumes its own facts
        return op in ("configure", "write") or (op == "read" and name in subscribed)
    if name == registry.TIMELINE_EXCHANGE:
        return (op in ("configure", "write") and d.timeline) or (op in ("configure", "read") and name in subscribed)
    if name in subscribed:
        return op in ("configure", "read")
    return False


@pytest.fixture
def permissions(objects) -> dict[str, dict[str, str]]:
    return {p["spec"]["userReference"]["name"]: p["spec"]["permissions"] for p in of_kind(objects, "Permission")}


@pytest.mark.parametrize("variant", variant_names("rabbitmq"))
def test_each_broker_user_may_touch_exactly_its_own_part_of_the_bus(permissions):
    assert set(permissions) == {d.name for d in REGISTRY.deployables}
    wrong = []
    for d in REGISTRY.deployables:
        for op in OPS:
            for name in sorted(bus_names()):
                allowed = re.fullmatch(permissions[d.name][op], name) is not None
                if allowed != expected(op, d, name):
                    wrong.append(f"{d.name} {op} {name}: {'allowed' if allowed else 'refused'}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("variant", variant_names("rabbitmq"))
def test_each_broker_user_is_its_deployable_in_the_crm_vhost(objects):
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind(objects, "User")}
    assert users == {d.name: {"rabbitmqClusterReference": {"name": "rabbitmq"},
                              "importCredentialsSecret": {"name": f"{d.name}-rabbitmq-user"}}
                     for d in REGISTRY.deployables}
    assert {p["spec"]["vhost"] for p in of_kind(objects, "Permission")} == {"crm"}


@pytest.mark.parametrize("variant", variant_names("mongodb"))
def test_each_service_has_one_database_user_with_its_own_database_only(objects):
    (mongodb,) = of_kind(objects, "MongoDBCommunity")
    users = {u["name"]: u for u in mongodb["spec"]["users"]}
    assert set(users) == {s.name for s in REGISTRY.services}, "one user per service, none for the gateway"
    for s in REGISTRY.services:
        assert users[s.name]["roles"] == [{"name": "readWrite", "db": s.database}]
        assert users[s.name]["passwordSecretRef"]["name"] == f"{s.name}-mongodb-user"
        assert users[s.name]["db"] == "admin"


def _secret(objects: list[dict], name: str) -> dict[str, str]:
    (secret,) = [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == name]
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def test_the_dev_placeholders_match_the_accounts_they_stand_for(rendered):
    """The dev overlay's Secrets name each deployable's own accounts and database."""
    objects = rendered["dev"]
    for d in REGISTRY.deployables:
        credentials = _secret(objects, f"{d.name}-credentials")
        amqp = urlsplit(credentials["AMQP_URI"])
        assert (amqp.username, amqp.path) == (d.name, "/crm")
        assert _secret(objects, f"{d.name}-rabbitmq-user")["username"] == d.name
        if d.kind == "service":
            assert urlsplit(credentials["MONGODB_URL"]).username == d.name
            assert set(_secret(objects, f"{d.name}-mongodb-user")) == {"password"}
        else:
            assert set(credentials) == {"AMQP_URI", "CRM_INTERNAL_SECRET"}
    internal = {_secret(objects, f"{d.name}-credentials")["CRM_INTERNAL_SECRET"] for d in REGISTRY.deployables}
    assert len(internal) == 1 and len(internal.pop()) >= 32   # one value everywhere, long enough to start
