"""API keys for machine clients (a shop, a point of sale, an import job).

A key is ``crm_<id>_<secret>``; the gateway stores only the SHA-256 of the secret (the
secret is 32 random bytes, so a fast hash is the right one; there is nothing to
brute-force), with its principal, roles, team, optional expiry and revocation, in a
JSON file (``AUTH_API_KEYS_FILE``; in a cluster, a Secret mounted as a file). The file
is re-read when it changes, so a revocation takes effect within a second, without a
restart.

    python -m crm_gateway.api_keys create --principal shop --role integration [--expires 2027-06-30]
    python -m crm_gateway.api_keys revoke <id>
    python -m crm_gateway.api_keys list
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crm_common import config
from crm_common.access import Policy, Principal
from crm_common.errors import Unauthenticated

API_KEY_PREFIX = "crm_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(key: str) -> tuple[str, str]:
    body = key[len(API_KEY_PREFIX):]
    key_id, _, secret = body.partition("_")
    return key_id, secret


class ApiKeys:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: float | None = None
        self._checked = 0.0
        self._keys: dict[str, dict[str, Any]] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0 and self._stamp is not None:
            return
        self._checked = now
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            self._keys, self._stamp = {}, 0.0
            return
        if stamp != self._stamp:
            self._stamp = stamp
            self._keys = {k["id"]: k for k in read(self.path)}

    def principal(self, key: str, access: Policy) -> Principal:
        self._refresh()
        key_id, secret = _split(key)
        entry = self._keys.get(key_id)
        if entry is None or not secret or not hmac.compare_digest(entry["hash"], _hash(secret)):
            raise Unauthenticated("unknown API key: ask an admin for one (python -m crm_gateway.api_keys create)")
        if entry.get("revoked_at"):
            raise Unauthenticated(f"API key {key_id} was revoked at {entry['revoked_at']}")
        expires = entry.get("expires_at")
        if expires and datetime.fromisoformat(expires) <= datetime.now(timezone.utc):
            raise Unauthenticated(f"API key {key_id} expired at {expires}")
        return Principal(subject=f"key:{entry['principal']}", roles=access.known_roles(entry.get("roles") or ()),
                         team=entry.get("team") or "", kind="api_key")


def read(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text() or "{}").get("keys") or [])
    except FileNotFoundError:
        return []


def write(path: Path, keys: list[dict[str, Any]]) -> None:
    """Atomically (a reader never sees half a file), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".api-keys.")
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": keys}, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def create(path: Path, principal: str, roles: list[str], team: str = "", expires: str = "") -> str:
    """A new key (returned once, never stored) for ``principal``."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32).replace("_", "-")
    entry = {"id": key_id, "hash": _hash(secret), "principal": principal, "roles": roles, "team": team,
             "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "expires_at": datetime.fromisoformat(expires).replace(tzinfo=timezone.utc).isoformat() if expires else None,
             "revoked_at": None}
    write(path, [*read(path), entry])
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def revoke(path: Path, key_id: str) -> bool:
    keys = read(path)
    found = False
    for k in keys:
        if k["id"] == key_id and not k.get("revoked_at"):
            k["revoked_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            found = True
    write(path, keys)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_gateway.api_keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", default=config.env("AUTH_API_KEYS_FILE", "var/auth/api-keys.json"))
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="a new key; printed once")
    c.add_argument("--principal", required=True)
    c.add_argument("--role", action="append", required=True)
    c.add_argument("--team", default="")
    c.add_argument("--expires", default="", help="ISO date or time (UTC)")
    r = sub.add_parser("revoke")
    r.add_argument("id")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if args.command == "create":
        print(create(path, args.principal, args.role, args.team, args.expires))
    elif args.command == "revoke":
        if not revoke(path, args.id):
            print(f"no active key {args.id} in {path}", file=sys.stderr)
            return 1
    else:
        for k in read(path):
            state = "revoked" if k.get("revoked_at") else "active"
            print(f"{k['id']}  {k['principal']}  {','.join(k.get('roles') or [])}  {state}  "
                  f"expires {k.get('expires_at') or 'never'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
