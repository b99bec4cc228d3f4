#!/usr/bin/env bash
# Generate the Python code of the public gRPC API (proto/crm/v1/*.proto) into
# gateway/crm/v1/ (importable as crm.v1.contacts_pb2 ...). The output is not
# committed (gitignored). Idempotent and fast: does nothing when every generated
# file is newer than every .proto; FORCE=1 regenerates anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/proto"
OUT="$ROOT/gateway"
GEN="$OUT/crm/v1"

shopt -s nullglob
protos=("$SRC"/crm/v1/*.proto)
[ ${#protos[@]} -gt 0 ] || { echo "gen-proto: no .proto under $SRC/crm/v1" >&2; exit 1; }

if [ "${FORCE:-0}" != 1 ] && [ -f "$GEN/.stamp" ]; then
  stale=0
  for p in "${protos[@]}" "${BASH_SOURCE[0]}"; do
    [ "$p" -nt "$GEN/.stamp" ] && stale=1
  done
  for p in "${protos[@]}"; do
    b="$(basename "$p" .proto)"
    [ -f "$GEN/${b}_pb2.py" ] || stale=1
  done
  [ "$stale" = 0 ] && exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$ROOT"
"$ROOT/.venv/bin/python" -m grpc_tools.protoc -I "$SRC" \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  "${protos[@]#$SRC/}"
touch "$tmp/crm/__init__.py" "$tmp/crm/v1/__init__.py"
touch "$tmp/crm/v1/.stamp"
# swap in atomically-ish: replace the whole generated tree
rm -rf "$OUT/crm.new" && mv "$tmp/crm" "$OUT/crm.new"
rm -rf "$OUT/crm" && mv "$OUT/crm.new" "$OUT/crm"
echo "gen-proto: generated $(ls "$GEN"/*_pb2*.py | wc -l) files in ${GEN#$ROOT/}" >&2
