"""Real credentials for the tests: a signing key and internal secret made once per test
run (crm_gateway.devauth), tokens minted with them, a gateway guard that trusts them.
Nothing turns authentication off; a test that wants a caller mints one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import grpc

from crm_common import access
from crm_gateway import client, devauth

AUTH = devauth.init(Path(tempfile.mkdtemp(prefix="crm-test-auth-")))
# Services started in-process (integration tests) read it through crm_common.config.
os.environ["CRM_INTERNAL_SECRET"] = AUTH.secret


def token(*roles: str, subject: str = "", team: str = "", **claims) -> str:
    """A bearer token for the gateway, as the identity provider would sign it."""
    return AUTH.mint(subject or f"test-{roles[0]}", roles, team, **claims)


def internal(*roles: str, subject: str = "", team: str = "") -> str:
    """An internal token, what the gateway hands a service: for calling services directly."""
    return access.mint(access.Principal(subject or f"user:test-{roles[0]}", tuple(roles), team), AUTH.secret)


def context(*roles: str, **kw) -> dict[str, str]:
    """nameko context data for a ClusterRpcProxy calling as ``roles``."""
    return {access.CONTEXT_KEY: internal(*roles, **kw)}


def guard(per_second: float = 10_000, burst: float = 10_000, *, api_keys: Path | None = None):
    from crm_gateway.api_keys import ApiKeys
    from crm_gateway.auth import Authenticator, JwtSettings, KeySet
    from crm_gateway.bridge import Guard
    from crm_gateway.ratelimit import RateLimiter
    from crm_common import config

    policy = access.policy()
    settings = JwtSettings(issuer=config.setting("gateway", "AUTH_ISSUER"),
                           audience=config.setting("gateway", "AUTH_AUDIENCE"))
    auth = Authenticator(KeySet(file=str(AUTH.jwks)), settings, ApiKeys(api_keys or AUTH.api_keys), policy)
    return Guard(auth, access.TokenCache(AUTH.secret), RateLimiter(policy, per_second, burst))


def channel(addr: str, *roles: str, **kw) -> grpc.Channel:
    """An insecure channel to ``addr`` whose calls carry a token for ``roles`` (default admin)."""
    return client.authorized(grpc.insecure_channel(addr), token(*(roles or ("admin",)), **kw))


def permit(rpc_name: str, permission: str = "contacts.write") -> None:
    """Declare a permission for a test double's RPC (``producer_t.make``) in this test
    process's policy; real services declare theirs in their registry entry."""
    assert rpc_name.split(".")[0] not in {s.name for s in __import__("crm_common.registry").registry.load().services}, \
        f"{rpc_name}: a real service's RPC belongs in its registry entry"
    access.policy().rpc[rpc_name] = permission
