"""Who is calling: the gateway as an OIDC resource server (bearer JWTs verified against
configured keys) and API keys for machine clients (crm_gateway.api_keys).

Credentials arrive in the ``authorization`` metadata: ``Bearer <jwt>`` or
``Bearer <api key>`` (an API key starts with ``crm_``; ``x-api-key: <key>`` works too).
A JWT is accepted when its signature verifies against a key of the configured JWKS
(a file, re-read when it changes, or an identity provider's URL, re-fetched when a
token names a key it has not seen: rotation without a restart), its issuer and audience
are the configured ones and it has not expired (with ``AUTH_LEEWAY_SECONDS`` of clock
skew). Roles come from the claim ``AUTH_ROLES_CLAIM`` (a dotted path such as
``realm_access.roles`` works; a list or a space-separated string), the team from
``AUTH_TEAM_CLAIM``; only roles crm_common/access.toml declares count.

Every failure is Unauthenticated with a message saying what to fix.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterable

import jwt

from crm_common import config
from crm_common.access import Policy, Principal, policy as load_policy
from crm_common.errors import Unauthenticated

from .api_keys import API_KEY_PREFIX, ApiKeys

log = logging.getLogger(__name__)

HOW = "send 'authorization: Bearer <token>' (README: Who may call)"
_REFETCH_SECONDS = 10.0     # at most one JWKS fetch per this, whatever tokens arrive
_CACHE_SIZE = 10_000


class KeySet:
    """A JWKS, from a file (re-read when its modification time changes, checked at most
    once a second) or a URL (fetched at start, again every ``refresh`` seconds and when
    a token names an unknown key id, at most once per ``_REFETCH_SECONDS``)."""

    def __init__(self, file: str = "", url: str = "", refresh: float = 300.0):
        if not file and not url:
            raise ValueError("a JWKS file or URL is needed")
        self.file, self.url, self.refresh = file, url, refresh
        self.keys: dict[str, jwt.PyJWK] = {}
        self.generation = 0
        self._stamp: float | None = None
        self._checked = 0.0
        self._fetched = 0.0

    def _load(self, text: str) -> None:
        keys = {}
        for key in jwt.PyJWKSet.from_dict(json.loads(text)).keys:
            keys[key.key_id or ""] = key
        if keys.keys() != self.keys.keys() or any(keys[k].key != self.keys[k].key for k in keys):
            self.keys = keys
            self.generation += 1
            log.info("signing keys loaded", extra={"kids": sorted(keys), "source": self.file or self.url})

    def _read_file(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0 and self.keys:
            return
        self._checked = now
        try:
            stamp = os.stat(self.file).st_mtime
        except OSError as exc:
            if not self.keys:
                raise Unauthenticated(f"the gateway cannot read its signing keys ({exc})") from None
            return
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                with open(self.file, encoding="utf-8") as f:
                    self._load(f.read())
            except (OSError, ValueError, jwt.PyJWTError) as exc:   # an empty or broken set: trust nothing new
                log.error("signing keys in %s not usable: %s", self.file, exc)

    def _fetch(self) -> None:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            self._load(response.read().decode())

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if self.file:
            self._read_file()
        else:
            now = time.monotonic()
            stale = now - self._fetched > self.refresh
            if (stale or kid not in self.keys) and now - self._fetched > _REFETCH_SECONDS:
                self._fetched = now
                try:
                    await asyncio.to_thread(self._fetch)
                except Exception as exc:  # noqa: BLE001 - keep the keys we have
                    log.warning("JWKS fetch failed: %s", exc)
        if kid in self.keys:
            return self.keys[kid]
        if not kid and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return None


@dataclass
class JwtSettings:
    issuer: str
    audience: str
    roles_claim: str = "roles"
    team_claim: str = "team"
    leeway: float = 30.0
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")


def claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _roles(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class Authenticator:
    def __init__(self, keys: KeySet | None, jwt_settings: JwtSettings | None, api_keys: ApiKeys | None,
                 access: Policy | None = None):
        if keys is None and api_keys is None:
            raise ValueError("configure AUTH_JWKS_FILE / AUTH_JWKS_URL, AUTH_API_KEYS_FILE, or both")
        self.keys, self.jwt, self.api_keys = keys, jwt_settings, api_keys
        self.policy = access or load_policy()
        self._cache: dict[str, tuple[Principal, float, int]] = {}

    @classmethod
    def from_settings(cls) -> "Authenticator":
        def s(name: str) -> str:
            return config.setting("gateway", name).strip()
        file, url = s("AUTH_JWKS_FILE"), s("AUTH_JWKS_URL")
        keys = KeySet(file=file, url=url) if file or url else None
        settings = JwtSettings(issuer=s("AUTH_ISSUER"), audience=s("AUTH_AUDIENCE"),
                               roles_claim=s("AUTH_ROLES_CLAIM"), team_claim=s("AUTH_TEAM_CLAIM"),
                               leeway=float(s("AUTH_LEEWAY_SECONDS")),
                               algorithms=tuple(a.strip() for a in s("AUTH_ALGORITHMS").split(",") if a.strip()))
        api_file = s("AUTH_API_KEYS_FILE")
        return cls(keys, settings if keys else None, ApiKeys(api_file) if api_file else None)

    async def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        credential = None
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() != "bearer" or not rest.strip():
                    raise Unauthenticated(f"the authorization metadata must be 'Bearer <token>'; {HOW}")
                credential = rest.strip()
            elif key == "x-api-key" and isinstance(value, str) and credential is None:
                credential = value.strip()
        if not credential:
            raise Unauthenticated(f"this call needs credentials: {HOW}")
        if credential.startswith(API_KEY_PREFIX):
            if self.api_keys is None:
                raise Unauthenticated("this gateway accepts no API keys (AUTH_API_KEYS_FILE is not set)")
            return self.api_keys.principal(credential, self.policy)
        return await self._jwt(credential)

    async def _jwt(self, token: str) -> Principal:
        if self.keys is None or self.jwt is None:
            raise Unauthenticated("this gateway accepts API keys only (no AUTH_JWKS_FILE / AUTH_JWKS_URL)")
        hit = self._cache.get(token)
        if hit and hit[1] > time.time() and hit[2] == self.keys.generation:
            return hit[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(f"the bearer token is not a JWT (nor an API key, which starts with "
                                  f"'{API_KEY_PREFIX}')") from None
        kid = str(header.get("kid") or "")
        key = await self.keys.key(kid)
        if key is None:
            raise Unauthenticated(f"the token is signed with a key this gateway does not trust (kid {kid!r}); "
                                  "get a token from the configured identity provider")
        s = self.jwt
        try:
            claims = jwt.decode(token, key.key, algorithms=list(s.algorithms), audience=s.audience,
                                issuer=s.issuer, leeway=s.leeway, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired: get a new one") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is for another audience; this gateway accepts '{s.audience}'") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token is from another issuer; this gateway trusts '{s.issuer}'") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify against the trusted keys") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the '{exc.claim}' claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        principal = Principal(subject=f"user:{claims['sub']}",
                              roles=self.policy.known_roles(_roles(claim(claims, s.roles_claim))),
                              team=str(claim(claims, s.team_claim) or ""), kind="user")
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = (principal, float(claims["exp"]), self.keys.generation)
        return principal
