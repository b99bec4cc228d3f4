"""Readiness bookkeeping and the service launcher: pure logic, no I/O."""
from __future__ import annotations

import pytest

from crm_common import launcher, probes


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


def test_launcher_finds_installed_services_and_their_config(monkeypatch):
    monkeypatch.delenv("CRM_CONFIG", raising=False)
    assert launcher.services()["contacts"] == "contacts.service:ContactsService"
    assert launcher.services()["loyalty"] == "loyalty.service:LoyaltyService"
    command = launcher.nameko_command("loyalty")
    assert command[0].endswith("nameko")
    assert command[1:] == ["run", "--config", "services/loyalty/config.yaml", "loyalty.service:LoyaltyService"]
    monkeypatch.setenv("CRM_CONFIG", "/app/config.yaml")
    assert launcher.nameko_command("contacts")[3] == "/app/config.yaml"


def test_launcher_refuses_an_unknown_service():
    with pytest.raises(SystemExit, match="unknown service 'nope'; installed: contacts, loyalty"):
        launcher.nameko_command("nope")
