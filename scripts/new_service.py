#!/usr/bin/env python3
"""Start a new service the way docs/adding-a-service.md describes, as a working example
to grow from: its package under services/, its public API under proto/crm/v1/ and its
registry entry.

    scripts/new_service.py NAME [--root DIR] [--registry FILE] [--metrics-port N]

NAME is lower case with '-' (``service-desk``); the Python package is NAME with '_'
(``service_desk``), the gRPC service ``crm.v1.<Camel>Service``. What it writes is a small
but complete service: one command and one query over the bus (CreateNote, GetNote), a
contract model per RPC, an event with a timeline fact, a store with its indexes, a view,
and nothing to register anywhere else. ``--root`` writes the files under another folder
(a test adds a throwaway service that way); ``--registry`` names the registry to extend
(default: the one under the root); ``--metrics-port`` the port of its ``/metrics`` under
``make up`` (default: one above the highest in the registry; name one when another branch
is adding a service at the same time, so the two do not collide).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Path("libs/crm-common/crm_common/registry.toml")

PYPROJECT = '''[project]
name = "crm-{name}"
version = "0.1.0"
description = "CRM {name} service (nameko)"
requires-python = ">=3.11"
dependencies = [
    "crm-common[nameko]",
]

[tool.uv.sources]
crm-common = {{ workspace = true }}

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["{pkg}"]
'''

PROTO = '''// The {name} service. See common.proto for the conventions on errors, deadlines,
// paging, idempotency keys and timestamps shared by every RPC.
syntax = "proto3";

package crm.v1;

import "google/protobuf/timestamp.proto";

service {camel}Service {{
  // Records a note about a contact; it also shows on the contact's timeline.
  // Errors: INVALID_ARGUMENT (empty contact_id, empty or too long text).
  rpc CreateNote(CreateNoteRequest) returns (Note);

  // Returns one note.
  // Errors: INVALID_ARGUMENT (empty note_id); NOT_FOUND.
  rpc GetNote(GetNoteRequest) returns (Note);
}}

message Note {{
  // Output only: "{prefix}_...".
  string id = 1;
  string contact_id = 2;
  string text = 3;
  // Output only.
  google.protobuf.Timestamp created_at = 4;
}}

message CreateNoteRequest {{
  string contact_id = 1;
  // Required, at most 2000 characters.
  string text = 2;
  // Optional: a retry with the same key returns the first call's result.
  string idempotency_key = 3;
}}

message GetNoteRequest {{
  string note_id = 1;
}}
'''

CONTRACTS = '''"""What the {name} service's RPCs accept: one model per RPC, the same fields as the
crm.v1.{camel}Service request messages (proto/crm/v1/{pkg}.proto)."""
from __future__ import annotations

from crm_common.contracts import Command, Id, Request, Text

TEXT_MAX = 2000


class CreateNote(Command):
    contact_id: Id
    text: Text(TEXT_MAX, required=True)


class GetNote(Request):
    note_id: Id
'''

EVENTS = '''"""Events of the {name} service, published on ``{name}.events``."""
from __future__ import annotations

from typing import ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import Reference, TimelineFact


class NoteCreated(Event):
    """A note about a contact was recorded."""

    type: ClassVar[str] = "note_created"
    contact_id: Id
    note_id: str
    text: str
    created_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self.fact(occurred_at=self.created_at, summary=self.text[:200],
                         reference=Reference(type="note", id=self.note_id))
'''

DOMAIN = '''"""Rules of the {name} service as plain functions (no I/O; ``now`` is passed in)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common.ids import new_id

from .contracts import CreateNote


def new_note(req: CreateNote, now: datetime) -> dict[str, Any]:
    return {{"_id": new_id("{prefix}"), "contact_id": req.contact_id, "text": req.text,
            "created_at": now, "updated_at": now, "version": 1}}
'''

STORE = '''"""Persistence of the {name} service: documents and queries, indexes declared here."""
from __future__ import annotations

from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.errors import NotFound

NOTES = "notes"


class {camel}Store:
    def __init__(self, db: Database):
        self.db = db
        self.notes = db[NOTES]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[NOTES].create_index("contact_id")
        db[NOTES].create_index(ev.OUTBOX_COUNT)

    def insert_note(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """One write: the note and the events announcing it. False if it exists already
        (the same create, replayed under its idempotency key)."""
        try:
            self.notes.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def get_note(self, note_id: str) -> dict[str, Any]:
        doc = self.notes.find_one({{"_id": note_id}})
        if doc is None:
            raise NotFound(f"note {{note_id}} not found", {{"note_id": note_id}})
        return doc
'''

VIEWS = '''"""What the {name} service answers with (the fields of crm.v1.Note)."""
from __future__ import annotations

from typing import Any

from crm_common import clock


def note_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {{"id": doc["_id"], "contact_id": doc["contact_id"], "text": doc["text"],
            "created_at": clock.to_iso(doc["created_at"])}}
'''

SERVICE = '''"""The {name} nameko service: entrypoints only (contracts.py says what each accepts)."""
from __future__ import annotations

from crm_common import clock
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.mongo import MongoStore

from . import contracts as C
from . import domain
from .events import NoteCreated
from .store import NOTES, {camel}Store
from .views import note_view


class {camel}Service(CrmService):
    name = "{name}"
    OUTBOX_COLLECTIONS = (NOTES,)
    PERSONAL_DATA = {{"notes": (NOTES, "contact_id")}}   # a data subject's export (crm_common.privacy)
    store = MongoStore({camel}Store)

    @rpc(C.CreateNote)
    def create_note(self, req: C.CreateNote):
        doc = domain.new_note(req, clock.now())
        staged = self.outbox.announce(NoteCreated(contact_id=doc["contact_id"], note_id=doc["_id"],
                                                  text=doc["text"], created_at=doc["created_at"]))
        # who did it, with the after: written to this service's audit trail with the note
        staged += self.outbox.audit("note", doc["_id"], "create", {{}}, note_view(doc), contact_id=doc["contact_id"])
        if self.store.insert_note(doc, staged):
            self.outbox.publish(self.store.notes, doc["_id"], staged)
        return note_view(self.store.get_note(doc["_id"]))

    @rpc(C.GetNote)
    def get_note(self, req: C.GetNote):
        return note_view(self.store.get_note(req.note_id))
'''

ENTRY = '''
[services.{name}]
module = "{pkg}.service:{camel}Service"
package = "crm-{name}"
path = "services/{name}"
metrics_port = {port}
grpc = ["crm.v1.{camel}Service"]
publishes = ["note_created"]
timeline = true
subscribes = []
replicas = [2, 6]

[services.{name}.permissions]
create_note = "{pkg}.write"
get_note = "{pkg}.read"
'''


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--metrics-port", type=int)
    args = parser.parse_args(argv)
    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        parser.error("NAME: lower case letters and digits, words joined by '-'")
    pkg = name.replace("-", "_")
    camel = "".join(part.capitalize() for part in name.split("-"))
    registry_file = args.registry or args.root / REGISTRY
    text = registry_file.read_text()
    if re.search(rf"^\[services\.{re.escape(name)}\]", text, re.M):
        parser.error(f"{name} is already in {registry_file}")
    taken = {int(p) for p in re.findall(r"^metrics_port = (\d+)", text, re.M)}
    port = args.metrics_port or max(taken) + 1
    if port in taken:
        parser.error(f"--metrics-port {port} is taken in {registry_file}")
    values = {"name": name, "pkg": pkg, "camel": camel, "prefix": pkg[:3], "port": port}

    service_dir = args.root / "services" / name
    files = {
        service_dir / "pyproject.toml": PYPROJECT, service_dir / pkg / "__init__.py": "",
        service_dir / pkg / "contracts.py": CONTRACTS, service_dir / pkg / "events.py": EVENTS,
        service_dir / pkg / "domain.py": DOMAIN, service_dir / pkg / "store.py": STORE,
        service_dir / pkg / "views.py": VIEWS, service_dir / pkg / "service.py": SERVICE,
        args.root / "proto" / "crm" / "v1" / f"{pkg}.proto": PROTO,
    }
    for path in files:
        if path.exists():
            parser.error(f"{path} exists already")
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    registry_file.write_text(text.rstrip("\n") + "\n" + ENTRY.format(**values))
    print(f"new service {name}: {service_dir}, proto/crm/v1/{pkg}.proto, [services.{name}] in {registry_file}\n"
          "next: make deps proto k8s-generate, write its tests, then see docs/adding-a-service.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
