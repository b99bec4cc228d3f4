"""Integration tests: one service at a time, in-process with nameko's testing tools,
over the real broker (a fresh vhost per run) and the real database (a fresh database
per test). Run under eventlet: `make test` starts them with `nameko test`."""
from __future__ import annotations

import pymongo
import pytest

from crm_common import config, registry
from support import auth
from support.infra import drop_vhost, fresh_vhost, unique_db


@pytest.fixture(scope="session")
def amqp_uri():
    uri, vhost = fresh_vhost()
    yield uri
    drop_vhost(vhost)


@pytest.fixture(scope="session")
def mongo_client():
    client = pymongo.MongoClient(config.mongodb_url(), tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def make_config(amqp_uri, mongo_client):
    """``make_config("loyalty", **extra)`` -> nameko config on a fresh database."""
    created = []

    def make(service: str, **extra):
        name = unique_db(service.replace("-", "_"))
        created.append(name)
        base = {"AMQP_URI": amqp_uri, "MONGODB_URL": config.mongodb_url(), "MONGODB_DATABASE": name,
                "METRICS_PORT": 0, "CRM_INTERNAL_SECRET": auth.AUTH.secret}
        if service in [s.name for s in registry.load().services]:  # the config `crm-service` would run with
            cfg = config.service_config(service, **base)
            cfg.pop("LOGGING")
            return {**cfg, **extra}
        return {**base, **extra}

    yield make
    for name in created:
        mongo_client.drop_database(name)


@pytest.fixture
def start_service(container_factory):
    """``start_service(ServiceClass, config)`` -> a started container (stopped after the test)."""
    def start(cls, cfg):
        container = container_factory(cls, cfg)
        container.start()
        return container

    return start


@pytest.fixture
def rpc(amqp_uri):
    """``rpc(config).loyalty.earn_points(...)`` through a real ClusterRpcProxy, calling as
    an admin (``roles=`` another principal; ``context=`` any nameko context data)."""
    from nameko.standalone.rpc import ClusterRpcProxy

    proxies = []

    def make(cfg, timeout=10, roles=("admin",), context=None, **principal):
        data = auth.context(*roles, **principal) if context is None else context
        proxy = ClusterRpcProxy(cfg, timeout=timeout, context_data=data)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def dispatch(amqp_uri):
    """``dispatch(config, source_service)(event_type, envelope)``: publish like a peer service."""
    from nameko.standalone.events import event_dispatcher

    def make(cfg, source):
        return lambda event_type, payload: event_dispatcher(cfg)(source, event_type, payload)

    return make
