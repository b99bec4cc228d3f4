"""End-to-end: a private stack (every service + the gateway as real processes) on its
own vhost, databases and ports, driven through the gRPC gateway as a client would."""
from __future__ import annotations

import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
import pymongo
import pytest

from crm_common import config, registry
from crm_gateway import client
from support.infra import ROOT, drop_vhost, fresh_vhost, unique_db

sys.path.insert(0, str(ROOT / "scripts"))
from stack import Stack, our_broker_env  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_stack(amqp_uri: str, run_dir: Path, broker_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Every service and the gateway on ``amqp_uri``, with their own databases and
    ports, each as its own broker user (on the node ``broker_env`` names, CRM_RABBITMQ_*;
    default the project's); stopped and the databases dropped on exit."""
    prefix = unique_db("e2e") + "_"
    st = Stack(amqp_uri=amqp_uri, gateway_addr=f"127.0.0.1:{free_port()}",
               metrics_ports={d.name: free_port() for d in registry.load().deployables},
               database_prefix=prefix, run_dir=run_dir, mail_ports=(free_port(), free_port()),
               # The suite calls faster than a person may (the limit itself: tests/e2e/test_access.py).
               settings={"GATEWAY_RATE_PER_SECOND": "0"},
               broker_env=broker_env if broker_env is not None else our_broker_env())
    try:
        st.up()
        yield st
    finally:
        st.down()
        client = pymongo.MongoClient(config.mongodb_url())
        for name in client.list_database_names():
            if name.startswith(prefix):
                client.drop_database(name)
        client.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    amqp_uri, vhost = fresh_vhost()
    try:
        with running_stack(amqp_uri, tmp_path_factory.mktemp("stack")) as st:
            yield st
    finally:
        drop_vhost(vhost)


@pytest.fixture(scope="session")
def start_stack(tmp_path_factory):
    """Another private stack, e.g. on a broker of its own: ``with start_stack(amqp_uri, node.env) as st``."""
    return lambda amqp_uri, broker_env=None: running_stack(amqp_uri, tmp_path_factory.mktemp("stack"), broker_env)


@pytest.fixture(scope="session")
def channel(stack):
    """A channel to the stack's gateway calling as an admin (tests of other roles open
    their own with ``connect``)."""
    with grpc.insecure_channel(stack.gateway_addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield client.authorized(ch, stack.token("admin", subject="e2e-admin"))


@pytest.fixture(scope="session")
def connect(stack):
    """``connect(*roles, subject=, team=)``: a channel calling as that principal."""
    opened = []

    def make(*roles, **kw):
        ch = grpc.insecure_channel(stack.gateway_addr)
        opened.append(ch)
        return client.authorized(ch, stack.token(*roles, **kw))

    yield make
    for ch in opened:
        ch.close()


@pytest.fixture(scope="session")
def db(stack):
    """Read access to the services' databases, to prove what the API cannot show (erasure)."""
    client = pymongo.MongoClient(config.mongodb_url(), tz_aware=True)
    yield lambda service: client[f"{stack.database_prefix}{service}"]
    client.close()
