"""Who may do what: the principal a call carries, the policy that says what it may do
(``access.toml`` beside this module), and the internal credential in which the
principal travels from the gateway to the services and between services.

The gateway authenticates the caller (crm_gateway.auth), checks the permission, and
hands the principal on as an **internal token**: a short-lived JWT (HS256) signed with
``CRM_INTERNAL_SECRET``, which only the gateway and the services hold, in nameko's
context data (AMQP header ``nameko.crm_auth``, next to ``nameko.call_id_stack``), so it
follows nested RPCs the way the request id does. Every service verifies it on every
RPC (crm_common.nameko.base) and checks the permission again: a caller that reaches
the broker cannot skip the gateway's rules by publishing a forged principal, because it
cannot sign one. Timers and event handlers act as ``service:<name>``.
"""
from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal

import jwt

from . import registry
from .errors import PermissionDenied, Unauthenticated

POLICY_PATH = Path(__file__).with_name("access.toml")
CONTEXT_KEY = "crm_auth"           # nameko context data key (AMQP header nameko.crm_auth)
PUBLIC = "public"
SERVICE_ROLE = "service"           # only ever minted by a service for itself, never by the gateway
INTERNAL_ISSUER = "crm"
INTERNAL_AUDIENCE = "crm-internal"
INTERNAL_TTL_SECONDS = 300
MIN_SECRET_BYTES = 32
MASK = "•••"

Scope = Literal["own", "team", "all"]
_WIDTH = {"own": 0, "team": 1, "all": 2}


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``subject``: ``user:<sub>``, ``key:<id>`` or ``service:<name>``."""

    subject: str
    roles: tuple[str, ...]
    team: str = ""
    kind: str = "user"              # user | api_key | service
    via: str = "gateway"            # who vouched for it: the gateway, or a service acting itself

    @property
    def id(self) -> str:
        """The bare identifier records store as their ``owner`` (``alice`` for ``user:alice``)."""
        return self.subject.partition(":")[2] or self.subject

    def claims(self) -> dict[str, Any]:
        return {"sub": self.subject, "roles": list(self.roles), "team": self.team, "kind": self.kind,
                "via": self.via}


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    grants: dict[str, Scope]        # permission ("*" = every) -> widest scope
    personal_data: bool = True
    rate: tuple[float, float] | None = None   # calls/s and burst at the gateway; None = its default


@dataclass(frozen=True)
class Access:
    """What one call may do: its principal, the permission checked and the scope granted."""

    principal: Principal
    permission: str
    scope: Scope = "all"
    personal_data: bool = True

    def owner_filter(self, owner_field: str = "owner", team_field: str = "team") -> dict[str, Any]:
        """The condition a query adds so the caller sees only what its scope allows
        (values, never operators, from the verified principal)."""
        if self.scope == "own":
            return {owner_field: self.principal.id}
        if self.scope == "team":
            return {team_field: self.principal.team or "\x00no team"}
        return {}

    def may_own(self, owner: str | None, team: str | None = None) -> bool:
        if self.scope == "all":
            return True
        if self.scope == "own":
            return owner == self.principal.id
        return bool(self.principal.team) and team == self.principal.team


@dataclass(frozen=True)
class Policy:
    rpc: dict[str, str]              # "service.method" -> permission (the registry's entries)
    base: dict[str, str]             # method of every CrmService -> permission
    roles: dict[str, Role]
    personal_fields: frozenset[str] = field(default_factory=frozenset)

    def permission(self, service: str, method: str) -> str | None:
        return self.rpc.get(f"{service}.{method}") or self.base.get(method)

    def permissions(self) -> list[str]:
        return sorted({*self.rpc.values(), *self.base.values()} - {PUBLIC})

    def authorize(self, principal: Principal | None, service: str, method: str) -> Access | None:
        """The caller's :class:`Access` to ``service.method``; None for a public RPC.
        Raises Unauthenticated without a principal, PermissionDenied without the grant."""
        permission = self.permission(service, method)
        if permission is None:
            raise PermissionDenied(f"{service}.{method} has no permission declared (its registry entry's permissions); "
                                   "nobody may call it until it has one")
        if permission == PUBLIC:
            return None
        if principal is None:
            raise Unauthenticated(f"{service}.{method} needs credentials: send 'authorization: Bearer <token>' "
                                  "(README: Who may call)")
        scope = self.scope(principal, permission)
        if scope is None:
            holders = [r.name for r in self.roles.values() if permission in r.grants or "*" in r.grants]
            raise PermissionDenied(
                f"{principal.subject} (roles: {', '.join(principal.roles) or 'none'}) may not {permission}; "
                f"roles that may: {', '.join(r for r in holders if r != SERVICE_ROLE)}",
                {"permission": permission})
        return Access(principal, permission, scope, self.personal_data(principal))

    def scope(self, principal: Principal, permission: str) -> Scope | None:
        best: Scope | None = None
        for name in principal.roles:
            role = self.roles.get(name)
            if role is None:
                continue
            granted = role.grants.get(permission) or role.grants.get("*")
            if granted and (best is None or _WIDTH[granted] > _WIDTH[best]):
                best = granted
        return best

    def personal_data(self, principal: Principal) -> bool:
        """True when any of the caller's roles may see personal data unmasked."""
        return any(self.roles[r].personal_data for r in principal.roles if r in self.roles)

    def known_roles(self, roles: Iterable[str]) -> tuple[str, ...]:
        """The roles of ``roles`` this policy knows, minus the services' own."""
        return tuple(r for r in roles if r in self.roles and r != SERVICE_ROLE)


def _grant(text: str, role: str) -> tuple[str, Scope]:
    permission, _, scope = text.partition(":")
    scope = scope or "all"
    if scope not in _WIDTH:
        raise ValueError(f"access.toml: role {role}: {text!r}: scope must be own, team or all")
    return permission, scope  # type: ignore[return-value]


def parse_policy(text: str, rpc: dict[str, str] | None = None) -> Policy:
    """The roles of ``text`` (access.toml) and ``rpc``: "service.method" -> permission."""
    raw = tomllib.loads(text)
    roles = {}
    for name, body in raw.get("roles", {}).items():
        grants: dict[str, Scope] = {}
        for g in body.get("grants", []):
            permission, scope = _grant(g, name)
            if permission not in grants or _WIDTH[scope] > _WIDTH[grants[permission]]:
                grants[permission] = scope
        rate = body.get("rate")
        roles[name] = Role(name, body.get("description", ""), grants, bool(body.get("personal_data", True)),
                           (float(rate[0]), float(rate[1])) if rate else None)
    return Policy(rpc=dict(rpc or {}), base=dict(raw.get("base", {})), roles=roles,
                  personal_fields=frozenset(raw.get("personal", {}).get("fields", ())))


@lru_cache(maxsize=4)
def _policy(registry_path: Path, mtime: float) -> Policy:
    reg = registry.load()
    return parse_policy(POLICY_PATH.read_text(),
                        {f"{s.name}.{m}": p for s in reg.services for m, p in s.permissions.items()})


def policy() -> Policy:
    """The policy for the registry in use (``CRM_REGISTRY``; its services' permissions)."""
    path = registry.path()
    return _policy(path, path.stat().st_mtime)


# -- masking --------------------------------------------------------------------------
_KEEP = {"label", "primary", "country"}


def _mask_value(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        if not value or key in _KEEP:
            return value
        local, at, domain = value.partition("@")
        return f"{local[:1]}{MASK}@{domain}" if at else f"{value[:1]}{MASK}"
    if isinstance(value, dict):
        return {k: _mask_value(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v, key) for v in value]
    return value


def mask(result: Any, fields: frozenset[str]) -> Any:
    """``result`` with every personal field (by key, at any depth) masked: strings keep
    their first character (and an email its domain), labels and flags stay."""
    if isinstance(result, dict):
        return {k: (_mask_value(v, k) if k in fields and v not in (None, "") else mask(v, fields))
                for k, v in result.items()}
    if isinstance(result, list):
        return [mask(v, fields) for v in result]
    return result


# -- the internal token -----------------------------------------------------------------
def check_secret(secret: str | None) -> str:
    if not secret or len(secret.encode()) < MIN_SECRET_BYTES:
        raise RuntimeError(f"CRM_INTERNAL_SECRET must be set to at least {MIN_SECRET_BYTES} random bytes "
                           "(make up writes one to var/auth/internal.secret; in a cluster: the Secret "
                           "crm-internal-auth)")
    return secret


def mint(principal: Principal, secret: str, ttl: float = INTERNAL_TTL_SECONDS) -> str:
    now = int(time.time())
    return jwt.encode({**principal.claims(), "iss": INTERNAL_ISSUER, "aud": INTERNAL_AUDIENCE,
                       "iat": now, "exp": now + int(ttl)}, secret, algorithm="HS256")


class InternalTokens:
    """Verifies internal tokens (with a small cache: the gateway reuses one per principal
    for a while, so most calls are a dict lookup)."""

    def __init__(self, secret: str, cache_size: int = 4096):
        self.secret = check_secret(secret)
        self.cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: Any) -> Principal:
        if not isinstance(token, str) or not token:
            raise Unauthenticated("the call carries no principal (nameko.crm_auth): call through the "
                                  "gateway, or as a service with crm_common.access.mint")
        hit = self._verified.get(token)
        if hit and hit[1] > time.time():
            return hit[0]
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience=INTERNAL_AUDIENCE,
                                issuer=INTERNAL_ISSUER, leeway=5,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the call's internal credential has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the call's internal credential is not valid ({exc})") from None
        principal = Principal(subject=str(claims["sub"]), roles=tuple(claims.get("roles") or ()),
                              team=str(claims.get("team") or ""), kind=str(claims.get("kind") or "user"),
                              via=str(claims.get("via") or ""))
        if len(self._verified) >= self.cache_size:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]) - 30)
        return principal


class TokenCache:
    """The minting side (the gateway; a service for its own timers and handlers): one
    internal token per principal, reused until it is half-way to its expiry (minting is an
    HMAC, cheap, but not free at thousands of calls/s)."""

    def __init__(self, secret: str, ttl: float = INTERNAL_TTL_SECONDS):
        self.secret = check_secret(secret)
        self.ttl = ttl
        self._tokens: dict[Principal, tuple[str, float]] = {}

    def token(self, principal: Principal) -> str:
        now = time.time()
        hit = self._tokens.get(principal)
        if hit and hit[1] > now:
            return hit[0]
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        token = mint(principal, self.secret, self.ttl)
        self._tokens[principal] = (token, now + self.ttl / 2)
        return token
