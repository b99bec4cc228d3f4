#!/usr/bin/env bash
# Build our FerretDB v1.24.2 binary (main.go embeds the upstream `ferretdb` package) with
# our fixes applied at build time, without committing FerretDB's code. Production runs
# MongoDB and needs none of this; the fixes make the local database behave like MongoDB
# where the services rely on it (tools/ferretdb/README.md has the why and the figures).
#
# The module is copied from the Go module cache into build/ (ignored), patched there, and
# main.go is built against the copy through a private go.mod with a `replace`. Each fix
# checks that upstream is what it expects and stops the build otherwise (the patches
# apply with --fuzz=0; a new FerretDB version means re-doing them, not a silent no-op).
#
# 1. `_id` lookups use the `_id` index (sed, below). FerretDB's SQLite backend indexes
#    `_id` as `_ferretdb_sjson->"_id"` but looks it up with `WHERE _ferretdb_sjson->'$._id'
#    = ?` (internal/backends/sqlite/metadata/metadata.go, IDColumn). SQLite uses an
#    expression index only for the same expression, so every find, update and delete by
#    `_id` scanned the whole table: 47 ms against 0.56 ms per lookup at 3,065 contacts.
#
# 2. Atomic single-document writes (patch/atomic-writes.patch + patch/handler/crm_writelock.go).
#    FerretDB v1 runs update, findAndModify and delete as read-modify-write in Go (query,
#    change the document in memory, write it back) with nothing isolating two commands, so
#    20 threads x 30 `$inc` kept 143-271 of 600 and two version-guarded updates could both
#    succeed. MongoDB makes every single-document write atomic. The patch serializes, per
#    database+collection and inside this process, each update statement, findAndModify,
#    delete statement and insert: from the query to the write-back. Inserts take the lock
#    too so an upsert (query, nothing found, insert) cannot interleave with a plain insert
#    of the same key: the upsert then either sees the document and updates it, or inserts
#    first and the plain insert gets a duplicate key, as on MongoDB (which retries such an
#    upsert as an update). Two upserts of one filter serialize likewise: one inserts, the
#    other updates. Writes of different collections still run concurrently; reads take no
#    lock. Valid for one FerretDB process per data directory, as scripts/infra.sh runs it.
#
# 3. Indexed lookups (patch/indexed-lookups.patch + patch/sqlite/**). Stock FerretDB puts a
#    filter into SQL only when it is exactly {_id: <string|ObjectId>}; anything else, even
#    {_id: x, version: v}, decodes every document (833 ms at 50,000). And FerretDB's
#    indexes hold the JSON text of a value (`_ferretdb_sjson->"f"`: '"abc"', '10'), which
#    orders neither numbers nor strings, so no range could use them anyway.
#    - metadata/crm_ordered.go: for the first key of every index (top-level fields) an
#      extra "ordered" index on `_ferretdb_sjson->>'f'`, the value as an SQL value (TEXT by
#      code point, numbers by value across int/long/double, dates as sjson's Unix
#      milliseconds, booleans 1/0, ObjectIds as hex; arrays as their JSON text). Created and
#      dropped with the index it follows, and at start-up for existing databases (CREATE
#      INDEX IF NOT EXISTS: an old var/ferretdb/data gets them the first time, once).
#    - crm_pushdown.go: equality, $in and $gt/$gte/$lt/$lte on top-level fields (in $and
#      too) become SQL on that very expression. The handler still applies the whole filter,
#      so the SQL only has to return a superset: an equality or range on f is ORed with
#      "f is an array" (`col >= '[' AND col < '\'`, an index range too), as MongoDB also
#      matches an array holding the value; doubles are compared within 1e-12; ranges keep
#      MongoDB's type brackets (`col < ''` ends the numbers, `col >= ''` starts the texts).
#    - handler/crm_sort.go: find sorted by {_id: 1|-1} with an _id range or $in on strings
#      (or ObjectIds) is sorted by SQLite on the ordered _id index and not again in Go, so
#      the limit stops reading after the page (paging by _id without reading the rest).
#    - explain returns the SQL and its arguments (queryPlanner.crmSQL/crmArgs), for
#      check-plans.sh, which runs EXPLAIN QUERY PLAN on them with the sqlite3 CLI.
# 4. No debug work in a release build (patch/release-build.patch), as FerretDB's other
#    debug aids already do. (a) Leak tracking: every document iterator, cursor and SQL row
#    set was registered with a pprof profile (recording the caller's stack) and a
#    finalizer, for FerretDB's own tests: 12 % of the database's CPU when reading contacts.
#    resource.Track/Untrack now return at once unless built with the debug tag. (b) SQL
#    logging: each statement built its debug log line (quoting its arguments, the whole
#    document of an insert or update) before the logger dropped it: 9 % of the CPU of
#    loyalty's earns. The lines are built only when debug logging is on.
# 5. A faster JSON codec for FerretDB's document format (sjson). FerretDB stores each
#    document as JSON plus its type schema and decodes every document it reads with
#    encoding/json, a Decoder per field: 258 us for one 3 KB contact, most of the database's
#    CPU in every benchmark. Its sjson package now imports github.com/goccy/go-json, a
#    drop-in for encoding/json (95 us). The stored format is the same JSON, so an existing
#    var/ferretdb/data reads as before. FerretDB's own sjson tests run against the swap
#    (all but the ones that pin encoding/json's wording for truncated or invalid input);
#    go.mod lists the module as `// indirect` since only the patched copy imports it
#    (`go mod tidy` would drop it).
#   tools/ferretdb/build.sh OUTPUT
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: build.sh OUTPUT}"
MODULE=github.com/FerretDB/FerretDB
VERSION=v1.24.2
BUILD="$HERE/build"
MOD="$BUILD/FerretDB"

die() { echo "build.sh: $*" >&2; exit 1; }

cd "$HERE"
SRC="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$SRC" ] || die "cannot find $MODULE@$VERSION in the module cache"
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp -R "$SRC" "$MOD"
chmod -R u+w "$MOD"

# 1. _id lookups use the _id index
METADATA="$MOD/internal/backends/sqlite/metadata/metadata.go"
BROKEN="IDColumn = DefaultColumn + \"->'\$._id'\""
grep -qF "$BROKEN" "$METADATA" || die "$METADATA is not what the _id fix expects"
sed -i "s|IDColumn = DefaultColumn + \"->'\\\$._id'\"|IDColumn = DefaultColumn + \`->\"_id\"\`|" "$METADATA"
grep -qF 'IDColumn = DefaultColumn + `->"_id"`' "$METADATA" || die "the _id fix did not apply"

# 2, 3 and 4: unified diffs of upstream files (exact context, no fuzz), then our own files
if ! command -v patch >/dev/null 2>&1; then
  echo "build.sh: installing patch (Debian)" >&2
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends patch >/dev/null; } \
    || die "the patch command is required (apt-get install patch)"
fi
apply() {  # apply PATCH: all hunks or nothing
  patch -d "$MOD" -p1 --dry-run --fuzz=0 --batch --silent < "$HERE/patch/$1" \
    || die "patch/$1 does not apply: upstream FerretDB is not what it expects"
  patch -d "$MOD" -p1 --fuzz=0 --batch --silent --no-backup-if-mismatch < "$HERE/patch/$1"
}
apply atomic-writes.patch
apply indexed-lookups.patch
apply release-build.patch
# 5. sjson on goccy/go-json (only the package's own files; its tests keep encoding/json)
SJSON="$MOD/internal/handler/sjson"
SJSON_FILES="$(grep -l '^	"encoding/json"$' "$SJSON"/*.go | grep -v '_test\.go$' || true)"
[ "$(echo "$SJSON_FILES" | grep -c .)" -ge 10 ] || die "$SJSON is not what the codec swap expects"
# shellcheck disable=SC2086
sed -i 's#^	"encoding/json"$#	json "github.com/goccy/go-json"#' $SJSON_FILES
GOJSON="$(sed -n 's/^	\(github.com\/goccy\/go-json v[^ ]*\) .*/\1/p' "$HERE/go.mod" | tr ' ' '@')"
[ -n "$GOJSON" ] || die "go.mod does not name github.com/goccy/go-json"
(cd "$MOD" && go mod edit -require="$GOJSON")
grep -F 'github.com/goccy/go-json ' "$HERE/go.sum" >> "$MOD/go.sum"

cp "$HERE/patch/handler/"crm_*.go "$MOD/internal/handler/"
cp "$HERE/patch/sqlite/"crm_*.go "$MOD/internal/backends/sqlite/"
cp "$HERE/patch/sqlite/metadata/"crm_*.go "$MOD/internal/backends/sqlite/metadata/"

# every hook is in place (the build fails anyway if a hook or a file is missing, this says which)
expect() { grep -qF "$2" "$MOD/$1" || die "patch did not apply: $1 lacks '$2'"; }
expect internal/handler/msg_update.go 'crmLockCollection(ctx, params.DB, params.Collection)'
expect internal/handler/msg_findandmodify.go 'crmLockCollection(ctx, params.DB, params.Collection)'
expect internal/handler/msg_delete.go 'crmLockCollection(connCtx, params.DB, params.Collection)'
[ "$(grep -c 'crmLockedInsertAll(' "$MOD/internal/handler/msg_insert.go")" = 2 ] || die "msg_insert.go: inserts not locked"
expect internal/backends/sqlite/collection.go 'whereClause, args := crmWhere(params.Filter, crmSortsByID(params.Sort))'
expect internal/backends/sqlite/metadata/registry.go 'crmEnsureAllOrderedIndexes(ctx, db, colls)'
expect internal/backends/sqlite/metadata/registry.go 'crmDropOrderedIndexes(ctx, db, c, dropped)'
expect internal/handler/msg_find.go 'crmIDSortPushdown(params.Filter, params.Sort)'
expect internal/util/resource/resource.go 'if !debugbuild.Enabled {'
[ "$(grep -c 'l.Enabled(ctx, slog.LevelDebug)' "$MOD/internal/util/fsql/tx.go")" = 6 ] || die "fsql/tx.go: SQL logs not guarded"

cp go.mod "$BUILD/go.mod"
cp go.sum "$BUILD/go.sum"
go mod edit -modfile="$BUILD/go.mod" -replace "$MODULE=$BUILD/FerretDB"
# the pushdown's own test: the SQL returns a superset of what FerretDB's filter matches
# (random documents and filters, in SQLite through FerretDB's own encoding)
# (~10 s; the test binary needs build/version/version.txt, which the module zip lacks)
echo "$VERSION" > "$MOD/build/version/version.txt"
(cd "$MOD" && go test -count=1 -run 'TestCrm' ./internal/backends/sqlite/ >/dev/null) \
  || die "pushdown tests failed: (cd $MOD && go test -run TestCrm -v ./internal/backends/sqlite/)"
# the codec swap: every sjson round trip as with encoding/json (error wording aside)
SJSON_SKIP='/(EOF|InvalidData)$'
(cd "$MOD" && go test -count=1 -skip "$SJSON_SKIP" ./internal/handler/sjson/ >/dev/null) \
  || die "sjson tests failed on go-json: (cd $MOD && go test -skip '$SJSON_SKIP' -v ./internal/handler/sjson/)"
rm "$MOD/build/version/version.txt"
go build -modfile="$BUILD/go.mod" -o "$OUT" .
