#!/usr/bin/env bash
# Build our FerretDB v1.24.2 binary (main.go embeds the upstream `ferretdb` package) with
# one upstream bug fixed, without committing FerretDB's code:
#
#   FerretDB's SQLite backend indexes `_id` as `_ferretdb_sjson->"_id"` but looks it up
#   with `WHERE _ferretdb_sjson->'$._id' = ?` (internal/backends/sqlite/metadata/
#   metadata.go, IDColumn). SQLite uses an expression index only for the same expression,
#   so every find, update and delete by `_id` scanned the whole table: 47 ms against
#   0.56 ms per lookup at 3,065 contacts, growing with every document (bench/README.md).
#
# The module is copied from the Go module cache into build/ (ignored), that one constant
# is changed to the index's expression, and main.go is built against the copy through a
# private go.mod with a `replace`. Databases written by a stock binary need no migration:
# the index the fixed lookup uses is the one FerretDB always created.
#   tools/ferretdb/build.sh OUTPUT
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: build.sh OUTPUT}"
MODULE=github.com/FerretDB/FerretDB
VERSION=v1.24.2
BUILD="$HERE/build"

cd "$HERE"
SRC="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$SRC" ] || { echo "build.sh: cannot find $MODULE@$VERSION in the module cache" >&2; exit 1; }
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp -R "$SRC" "$BUILD/FerretDB"
chmod -R u+w "$BUILD/FerretDB"

METADATA="$BUILD/FerretDB/internal/backends/sqlite/metadata/metadata.go"
BROKEN="IDColumn = DefaultColumn + \"->'\$._id'\""
grep -qF "$BROKEN" "$METADATA" || { echo "build.sh: $METADATA is not what this fix expects" >&2; exit 1; }
sed -i "s|IDColumn = DefaultColumn + \"->'\\\$._id'\"|IDColumn = DefaultColumn + \`->\"_id\"\`|" "$METADATA"
grep -qF 'IDColumn = DefaultColumn + `->"_id"`' "$METADATA" || { echo "build.sh: patch did not apply" >&2; exit 1; }

cp go.mod "$BUILD/go.mod"
cp go.sum "$BUILD/go.sum"
go mod edit -modfile="$BUILD/go.mod" -replace "$MODULE=$BUILD/FerretDB"
go build -modfile="$BUILD/go.mod" -o "$OUT" .
