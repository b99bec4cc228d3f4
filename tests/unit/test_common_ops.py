"""Readiness bookkeeping and the service launcher: pure logic, no I/O."""
from __future__ import annotations

import pytest

from crm_common import launcher, probes, registry


@pytest.fixture
def clean_checks():
    before = set(probes.check_names())
    yield
    for name in set(probes.check_names()) - before:
        probes.remove_check(name)


def test_readiness_lists_every_failing_check_and_only_those(clean_checks):
    probes.add_check("t.ok", lambda: None)
    probes.add_check("t.reason", lambda: "queue full")

    def boom():
        raise ConnectionRefusedError("[Errno 111] refused")

    probes.add_check("t.raises", boom)
    failing = [p for p in probes.failing_checks() if p.startswith("t.")]
    assert failing == ["t.reason: queue full", "t.raises: ConnectionRefusedError: [Errno 111] refused"]
    probes.remove_check("t.reason")
    probes.remove_check("t.raises")
    assert not [p for p in probes.failing_checks() if p.startswith("t.")]


def test_every_registered_service_module_is_importable_as_a_nameko_service():
    import importlib

    for service in registry.load().services:
        module, _, cls = service.module.partition(":")
        assert getattr(importlib.import_module(module), cls).name == service.name


def test_launcher_refuses_an_unknown_service():
    with pytest.raises(SystemExit, match="no service 'nope'.*known: contacts, loyalty"):
        launcher.main(["nope"])
