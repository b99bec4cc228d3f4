#!/usr/bin/env bash
# Check, with the sqlite3 CLI, that the SQL our FerretDB build generates for the filter
# shapes the services use is served by an index: no full scan, no sort step.
#
#   tools/ferretdb/check-plans.sh [FERRETDB_BINARY]   (default: the binary scripts/infra.sh runs)
#
# Starts the binary on a free port with a throw-away data directory (never the project's
# FerretDB), creates a collection with the services' kinds of indexes and a few thousand
# documents, asks FerretDB's explain for the SQL of each shape (our build returns it in
# queryPlanner.crmSQL/crmArgs), copies the database file with sqlite3's .backup (the
# live one is in WAL mode) and runs EXPLAIN QUERY PLAN on the copy. Installs the sqlite3
# CLI (Debian) when missing. Exit status 1 if any shape scans or sorts.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${1:-$ROOT/$(sed -n 's/^FERRETDB_BIN="\$ROOT\/\(.*\)"$/\1/p' "$ROOT/scripts/infra.sh")}"
PY="$ROOT/.venv/bin/python"
[ -x "$BIN" ] || { echo "check-plans.sh: no FerretDB binary at $BIN (scripts/infra.sh install builds it)" >&2; exit 2; }
[ -x "$PY" ] || { echo "check-plans.sh: needs the project's .venv (make deps)" >&2; exit 2; }

if ! command -v sqlite3 >/dev/null 2>&1; then
  echo "check-plans.sh: installing the sqlite3 CLI (Debian)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
fi

TMP="$(mktemp -d)"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$TMP/data"
"$BIN" -listen-addr "127.0.0.1:$PORT" -sqlite-url "file:$TMP/data/" >"$TMP/ferretdb.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

"$PY" - "mongodb://127.0.0.1:$PORT/" "$TMP" <<'EOF'
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pymongo

url, tmp = sys.argv[1], sys.argv[2]
T0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
db = pymongo.MongoClient(url, tz_aware=True).plans
c = db.c
for key in ("contact_id", "due_at", "amount", "email", "erased", "owner"):
    c.create_index(key)
c.create_index([("contact_id", 1), ("seq", -1)], unique=True)
c.insert_many([{"_id": f"con_{i:05d}", "contact_id": f"c{i % 300}", "seq": i, "kind": ("note", "call")[i % 2],
                "due_at": T0 + timedelta(minutes=i), "amount": i % 500, "email": f"u{i}@example.com",
                "erased": i % 10 == 0, "owner": f"o{i % 7}", "version": i % 3, "balance": i % 100,
                "tags": ["a", "b"]} for i in range(3000)])

SHAPES = [
    ("find by _id", {"_id": "con_00001"}, None),
    ("guarded update {_id, version}", {"_id": "con_00001", "version": 1}, None),
    ("guarded decrement {_id, balance >= n}", {"_id": "con_00001", "balance": {"$gte": 1}}, None),
    ("by an indexed field", {"contact_id": "c1"}, None),
    ("indexed field + another", {"contact_id": "c1", "kind": "note"}, None),
    ("two indexed fields", {"contact_id": "c1", "owner": "o1"}, None),
    ("$in on an indexed field", {"email": {"$in": ["u1@example.com", "u2@example.com"]}}, None),
    ("prefix regex on an indexed field", {"email": {"$regex": "^u12"}}, None),
    ("date before (due timers)", {"due_at": {"$lt": T0 + timedelta(minutes=5)}}, None),
    ("date window", {"due_at": {"$gte": T0, "$lt": T0 + timedelta(hours=1)}}, None),
    ("number range", {"amount": {"$gt": 490}}, None),
    ("number window", {"amount": {"$gte": 10, "$lte": 12}}, None),
    ("_id range", {"_id": {"$lt": "con_00010"}}, None),
    ("page by _id (sort _id desc)", {"_id": {"$lt": "con_01000"}, "erased": False}, {"_id": -1}),
    ("page by _id ascending", {"_id": {"$gt": ""}}, {"_id": 1}),
    ("in $and", {"$and": [{"contact_id": "c1"}, {"due_at": {"$gte": T0}}]}, None),
]


def literal(v):
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


script, labels = [], []
for label, flt, sort in SHAPES:
    cmd = {"find": "c", "filter": flt, **({"sort": sort, "limit": 20} if sort else {})}
    qp = db.command("explain", cmd)["queryPlanner"]
    if "crmSQL" not in qp:
        sys.exit("check-plans.sh: this FerretDB build does not return its SQL (not our build?)")
    pieces = qp["crmSQL"].split("?")
    args = list(qp["crmArgs"])
    assert len(pieces) == len(args) + 1, (qp["crmSQL"], args)
    sql = pieces[0] + "".join(literal(a) + p for a, p in zip(args, pieces[1:]))
    labels.append((label, sql))
    script += [f"SELECT '--- {len(labels) - 1}';", f"EXPLAIN QUERY PLAN {sql};"]

live, copy = f"{tmp}/data/plans.sqlite", f"{tmp}/copy.sqlite"
subprocess.run(["sqlite3", live, f".backup {copy}"], check=True)
out = subprocess.run(["sqlite3", copy], input="\n".join(script), capture_output=True, text=True, check=True).stdout
plans = {}
for line in out.splitlines():
    if line.startswith("--- "):
        current = int(line[4:])
        plans[current] = []
    elif line.strip() and line.strip() != "QUERY PLAN":
        plans[current].append(line.strip(" |`-"))

version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[0]
print(f"EXPLAIN QUERY PLAN, sqlite3 CLI {version}, on a copy of the database file:")
failed = 0
for i, (label, sql) in enumerate(labels):
    steps = plans.get(i, [])
    text = " ".join(steps)
    ok = "USING INDEX" in text or "USING COVERING INDEX" in text
    ok = ok and "SCAN" not in text and "TEMP B-TREE" not in text
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'}  {label}")
    if not ok or "-v" in sys.argv:
        print(f"      {sql}")
    for step in steps:
        print(f"      {step}")
sys.exit(1 if failed else 0)
EOF
