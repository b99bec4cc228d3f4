"""crm_common.mongo on FerretDB: conditions are checked in Python after a read by ``_id``
alone, the only filter FerretDB v1 pushes down to SQLite (anything more is a scan)."""
from __future__ import annotations

import pytest

from crm_common import mongo
from crm_common.mongo import delete_if, matches, update_if


def test_matches_the_subset_conditional_writes_use():
    doc = {"_id": "a", "version": 3, "contact_id": "con_1", "_outbox": {"evt_1": {"type": "x"}}, "n": None}
    assert matches(doc, {"version": 3}) and not matches(doc, {"version": 4})
    assert matches(doc, {"version": {"$lte": 3}}) and not matches(doc, {"version": {"$lt": 3}})
    assert matches(doc, {"version": {"$gte": 3, "$lte": 5}}) and not matches(doc, {"version": {"$gt": 3}})
    assert matches(doc, {"_outbox.evt_1": {"$exists": True}}) and not matches(doc, {"_outbox.evt_2": {"$exists": True}})
    assert matches(doc, {"_outbox.evt_2": {"$exists": False}})
    assert matches(doc, {"contact_id": "con_1", "version": 3}) and not matches(doc, {"contact_id": "con_2"})
    assert not matches(doc, {"missing": {"$lte": 3}}) and not matches(doc, {"version": {"$lte": "3"}})
    assert matches(doc, {"missing": None}) and matches(doc, {"n": None}) and not matches(doc, {"version": None})
    assert not matches(doc, {"missing": 1}) and matches(doc, {})
    with pytest.raises(ValueError):
        matches(doc, {"version": {"$in": [3]}})


class FakeCollection:
    """Records the filters a conditional write sends; holds one document."""

    def __init__(self, doc):
        self.doc, self.filters, self.database = doc, [], type("D", (), {"client": object()})()

    def find_one(self, flt, projection=None):
        self.filters.append(flt)
        return dict(self.doc) if self.doc and self.doc["_id"] == flt["_id"] else None

    def update_one(self, flt, update, upsert=False):
        self.filters.append(flt)
        matched = int(self.doc is not None and self.doc["_id"] == flt["_id"])
        return type("R", (), {"matched_count": matched, "upserted_id": flt["_id"] if upsert and not matched else None})

    def delete_one(self, flt):
        self.filters.append(flt)
        return type("R", (), {"deleted_count": int(self.doc is not None and self.doc["_id"] == flt["_id"])})


@pytest.fixture
def ferretdb(monkeypatch):
    monkeypatch.setattr(mongo, "is_ferretdb", lambda client: True)


def test_on_ferretdb_every_filter_is_the_id_alone(ferretdb):
    coll = FakeCollection({"_id": "a", "version": 2})
    assert not update_if(coll, "a", {"version": 1}, {"$set": {"x": 1}})
    assert update_if(coll, "a", {"version": {"$lte": 2}}, {"$set": {"x": 1}})
    assert not update_if(coll, "b", {"version": 1}, {"$set": {"x": 1}})
    assert update_if(coll, "b", {"version": {"$lte": 1}}, {"$set": {"version": 1}}, upsert=True)
    assert not delete_if(coll, "a", {"version": 3}) and delete_if(coll, "a", {"version": 2})
    assert coll.filters and all(f in ({"_id": "a"}, {"_id": "b"}) for f in coll.filters)
