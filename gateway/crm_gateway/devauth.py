"""Local credentials, for `make up` and the tests (never for production, where an
identity provider signs the tokens and the secrets come from the cluster):

- ``jwt-signing-key.pem``: an EC P-256 key, the local stand-in for an identity
  provider's signing key; ``jwks.json``: its public half, which the gateway trusts
  (``AUTH_JWKS_FILE``);
- ``internal.secret``: the gateway's and services' shared internal-token secret
  (``CRM_INTERNAL_SECRET``, crm_common.access);
- ``api-keys.json``: the API-key file (``AUTH_API_KEYS_FILE``, crm_gateway.api_keys).

    python -m crm_gateway.devauth init  [--dir var/auth]
    python -m crm_gateway.devauth token --role admin [--subject alice] [--team north] [--ttl 28800]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crm_common import config

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "var" / "auth"
KID = "crm-local-1"


def _private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class DevAuth:
    dir: Path

    @property
    def signing_key(self) -> Path:
        return self.dir / "jwt-signing-key.pem"

    @property
    def jwks(self) -> Path:
        return self.dir / "jwks.json"

    @property
    def secret_file(self) -> Path:
        return self.dir / "internal.secret"

    @property
    def api_keys(self) -> Path:
        return self.dir / "api-keys.json"

    @property
    def secret(self) -> str:
        return self.secret_file.read_text().strip()

    def environment(self) -> dict[str, str]:
        """What the gateway and the services need to find these (crm_common.config)."""
        return {"AUTH_JWKS_FILE": str(self.jwks), "AUTH_API_KEYS_FILE": str(self.api_keys),
                "CRM_INTERNAL_SECRET": self.secret}

    def mint(self, subject: str, roles: list[str] | tuple[str, ...], team: str = "", ttl: float = 8 * 3600,
             *, audience: str | None = None, issuer: str | None = None, expires_in: float | None = None,
             key: Path | None = None, kid: str = KID) -> str:
        """A token as the local identity provider would sign it."""
        now = int(time.time())
        claims = {"sub": subject, "roles": list(roles), "iat": now,
                  "exp": now + int(ttl if expires_in is None else expires_in),
                  "iss": issuer or config.setting("gateway", "AUTH_ISSUER"),
                  "aud": audience or config.setting("gateway", "AUTH_AUDIENCE")}
        if team:
            claims["team"] = team
        pem = (key or self.signing_key).read_bytes()
        return jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid})


def new_key_pair(pem: Path, jwks: Path | None = None, kid: str = KID) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _private(pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    if jwks is not None:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwks.write_text(json.dumps({"keys": [{**public, "kid": kid, "use": "sig", "alg": "ES256"}]}, indent=2))


def init(directory: Path = DEFAULT_DIR) -> DevAuth:
    """Create what is missing (idempotent: existing keys and API keys are kept)."""
    auth = DevAuth(Path(directory))
    auth.dir.mkdir(parents=True, exist_ok=True)
    if not auth.signing_key.exists() or not auth.jwks.exists():
        new_key_pair(auth.signing_key, auth.jwks)
    if not auth.secret_file.exists():
        _private(auth.secret_file, secrets.token_urlsafe(48).encode())
    if not auth.api_keys.exists():
        _private(auth.api_keys, b'{"keys": []}')
    return auth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_gateway.devauth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(DEFAULT_DIR))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the local keys and secret (kept if present)")
    t = sub.add_parser("token", help="print a token for a role, signed by the local key")
    t.add_argument("--role", action="append", required=True)
    t.add_argument("--subject", default="")
    t.add_argument("--team", default="")
    t.add_argument("--ttl", type=float, default=8 * 3600, help="seconds (default 8 h)")
    args = parser.parse_args(argv)
    auth = init(Path(args.dir))
    if args.command == "token":
        print(auth.mint(args.subject or f"dev-{args.role[0]}", args.role, args.team, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
