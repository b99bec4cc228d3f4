"""The shared contract building blocks: argument models, paging tokens, replayable ids,
typed events and the timeline contract, the registry and the configuration it feeds."""
from __future__ import annotations

from typing import ClassVar, Literal

import pytest
from pydantic import Field

from crm_common import config, contracts, events, ids, paging, registry
from crm_common.contracts import Command, Id, OptText, OptTimestamp, Page, Request, Text
from crm_common.errors import InvalidArgument
from crm_common.timeline import TIMELINE_FACT, TimelineFact


class Thing(Command, Page):
    thing_id: Id
    name: Text(10, required=True)
    nick: OptText(5) = None
    kind: Literal["a", "b"] = "a"
    at: OptTimestamp = None
    count: int = Field(1, ge=1)


def fields_of(exc) -> dict[str, str]:
    return {v["field"]: v["description"] for v in exc.value.violations}


def test_a_valid_request_is_normalized():
    t = contracts.parse(Thing, {"thing_id": "thg_1", "name": "  two   words ", "nick": "", "at": "2026-01-01T03:30:00+03:30"})
    assert t.name == "two words" and t.nick is None and t.kind == "a" and t.size == contracts.DEFAULT_PAGE_SIZE
    assert contracts.dump(t)["at"] == "2026-01-01T00:00:00.000Z" and t.idempotency_key is None


def test_every_violation_is_named_by_its_path_in_our_words():
    with pytest.raises(InvalidArgument) as exc:
        contracts.parse(Thing, {"thing_id": {"$ne": ""}, "name": "", "nick": "toolong", "kind": "c", "count": "5",
                                "at": "soon", "page_size": 501, "idempotency_key": "has space", "extra": 1})
    assert fields_of(exc) == {
        "thing_id": "must be a string", "name": "is required", "nick": "must be at most 5 characters",
        "kind": "must be one of: a or b", "count": "must be an integer",
        "at": "must be an ISO-8601 timestamp such as 2026-11-25T20:00:00Z", "page_size": "must be at most 500",
        "idempotency_key": "must be 1 to 100 characters of letters, digits and . _ : / = + -",
        "extra": "unknown field"}
    assert exc.value.message.endswith("(and 8 more)")


def test_ids_are_plain_strings_never_operators_or_patterns():
    for bad in [{"$gt": ""}, ["x"], 5, "", "con 1", "a" * 65, "con_1;drop"]:
        with pytest.raises(InvalidArgument):
            contracts.parse(Thing, {"thing_id": bad, "name": "x"})


def test_nested_paths_and_prefix():
    class Inner(contracts.Model):
        tags: list[Text(3)] = []

    class Outer(Request):
        inner: Inner
        by_key: dict[str, Inner] = {}

    with pytest.raises(InvalidArgument) as exc:
        contracts.parse(Outer, {"inner": {"tags": ["ok", "long"]}, "by_key": {"k": {"tags": [1]}}}, prefix="req")
    assert list(fields_of(exc)) == ["req.inner.tags[1]", "req.by_key.k.tags[0]"]


def test_page_tokens_round_trip_and_refuse_anything_else():
    token = paging.encode(at="2026-01-01T00:00:00.000Z", id="tle_1")
    assert paging.decode(token, at=str, id=str) == {"at": "2026-01-01T00:00:00.000Z", "id": "tle_1"}
    assert paging.decode("", id=str) is None
    for bad in ["!!!", "abc", paging.encode(id={"$gt": ""}), paging.encode(id="x", more=1), paging.encode(seq=True),
                "x" * 2000]:
        with pytest.raises(InvalidArgument) as exc:
            paging.decode(bad, id=str) if "seq" not in bad else paging.decode(bad, seq=int)
        assert list(fields_of(exc)) == ["page_token"]
    rows, token = paging.page([1, 2, 3], 2, lambda r: {"n": r})
    assert rows == [1, 2] and paging.decode(token, n=int) == {"n": 2}
    assert paging.page([1, 2], 2, lambda r: {"n": r}) == ([1, 2], "")


def test_a_list_in_id_order_pages_through_every_record_once():
    records = [{"_id": f"r{i:02d}"} for i in range(7)]
    fetch = lambda after, limit: [r for r in records if after is None or r["_id"] > after][:limit]  # noqa: E731
    seen, token = [], ""
    while True:
        page, token = paging.by_id(token, 3, fetch)
        seen += page
        if not token:
            break
    assert seen == records
    with pytest.raises(InvalidArgument):
        paging.by_id(paging.encode(at="x"), 3, fetch)


def test_replayable_ids_repeat_for_the_same_seed_and_sort_by_its_time():
    with ids.replayable("create_contact:key-1", 1_700_000_000_000):
        first = [ids.new_id("con"), ids.new_id("evt")]
    with ids.replayable("create_contact:key-1", 1_700_000_000_000):
        again = [ids.new_id("con"), ids.new_id("evt")]
    with ids.replayable("create_contact:key-2", 1_700_000_000_000):
        other = ids.new_id("con")
    assert first == again and other != first[0] and first[0] != first[1].replace("evt", "con")
    assert first[0] < ids.new_id("con")   # the claim's time, not now
    assert ids.new_id("con") != ids.new_id("con")  # outside: random again


class Waved(events.Event):
    """Somebody waved."""

    type: ClassVar[str] = "waved"
    contact_id: Id
    at: contracts.Timestamp

    def timeline(self):
        return TimelineFact(contact_id=self.contact_id, kind="waved", summary="Waved at us", occurred_at=self.at)


class Pinged(events.Event):
    type: ClassVar[str] = "pinged"
    contact_id: Id


def test_an_event_is_announced_with_its_timeline_fact():
    out = events.announce(Waved(contact_id="con_1", at="2026-01-01T00:00:00Z"), source="test", correlation_id="r1")
    assert [e["type"] for e in out] == ["waved", TIMELINE_FACT]
    event, fact = out
    assert event["data"] == {"contact_id": "con_1", "at": "2026-01-01T00:00:00.000Z"}
    assert event["subject"] == "con_1" and event["subject_type"] == "contact" and event["version"] == 1
    assert fact["data"]["summary"] == "Waved at us" and fact["correlation_id"] == "r1"
    assert fact["event_id"] == ids.derived_id("evt", "timeline", event["event_id"])
    assert [e["type"] for e in events.announce(Pinged(contact_id="con_1"), source="test")] == ["pinged"]
    assert events.declared_events(__import__(__name__)) == {"waved": Waved, "pinged": Pinged}


def test_the_registry_names_queues_and_routes_and_refuses_nonsense(tmp_path):
    reg = registry.load()
    assert [s.name for s in reg.services] and reg.gateway.name == "gateway"
    loyalty = reg.service("loyalty")
    assert loyalty.queues[0] == "rpc-loyalty" and "evt-contacts-contact_created--loyalty" in loyalty.queues
    assert reg.service("contacts").queues == ("rpc-contacts", "evt-timeline--contacts",
                                              "evt-marketing-contact_unsubscribed--contacts")
    assert reg.grpc_routes()["crm.v1.LoyaltyService"] == "loyalty"
    assert registry.snake_case("CreateContact") == "create_contact"
    base = registry.DEFAULT_PATH.read_text()
    with pytest.raises(ValueError, match="does not publish"):
        registry.parse(base.replace('"contacts.contact_erased"', '"contacts.contact_vanished"'))
    with pytest.raises(ValueError, match="metrics ports"):
        registry.parse(base.replace("metrics_port = 9102", "metrics_port = 9101"))


def test_service_config_comes_from_the_environment_over_registry_defaults(monkeypatch):
    monkeypatch.setenv("LOYALTY_POINTS_TTL_DAYS", "30")
    monkeypatch.setenv("MAX_WORKERS", "3")
    cfg = config.service_config("loyalty", MONGODB_DATABASE="test_x")
    assert cfg["LOYALTY_POINTS_TTL_DAYS"] == "30" and cfg["max_workers"] == 3 and cfg["MONGODB_DATABASE"] == "test_x"
    assert config.setting("loyalty", "LOYALTY_EXPIRY_INTERVAL_SECONDS") == "60"
    with pytest.raises(KeyError):
        config.setting("loyalty", "NOT_DECLARED")
