"""The database compatibility suite: plain pymongo and real OS threads, never eventlet
(scripts/test.sh runs this folder with ``pytest -p no:pytest_nameko``)."""
from __future__ import annotations

import os
import uuid

import pymongo
import pytest

DEFAULT_URL = "mongodb://127.0.0.1:27217/"


def mongodb_url() -> str:
    return os.environ.get("MONGODB_URL") or DEFAULT_URL


def pytest_configure(config):
    config.addinivalue_line("markers", "known_gap(reason): MongoDB behaviour FerretDB v1 gets wrong "
                                       "(strict xfail there, so a fix shows)")


@pytest.fixture(scope="session")
def client():
    # a pool big enough for every racing thread to hold its own connection
    c = pymongo.MongoClient(mongodb_url(), tz_aware=True, maxPoolSize=128, serverSelectionTimeoutMS=10_000)
    yield c
    c.close()


@pytest.fixture(scope="session")
def ferretdb(client) -> bool:
    """True when the server is FerretDB (its buildInfo carries ``ferretdbVersion``)."""
    return "ferretdbVersion" in client.admin.command("buildInfo")


@pytest.fixture
def db(client):
    """A fresh database per test, dropped after it."""
    name = f"test_semantics_{uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)


@pytest.fixture(autouse=True)
def _known_gap(request, ferretdb):
    """@pytest.mark.known_gap(reason): must fail on FerretDB (strict xfail), pass elsewhere."""
    mark = request.node.get_closest_marker("known_gap")
    if mark and ferretdb:
        request.applymarker(pytest.mark.xfail(strict=True, reason="FerretDB v1: " + mark.args[0]))
