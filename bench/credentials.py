"""Who the benchmark calls as: an integration client (a machine client, with that role's
own rate limit; crm_common/access.toml), with a token signed by the local stack's key
(var/auth, made by `make up`), as every other caller of the gateway must."""
from __future__ import annotations

import json
import os

import grpc

from crm_common import access
from crm_gateway import client, devauth

from .procs import ROOT

SUBJECT, ROLES = "bench", ("integration",)
AUTH_DIR = "CRM_BENCH_AUTH_DIR"   # the stack's keys, when not make up's (var/auth)


def _auth() -> devauth.DevAuth:
    return devauth.init(os.environ.get(AUTH_DIR) or ROOT / "var" / "auth")


def token(*roles: str) -> str:
    """The benchmark's token: an integration's, or of ``roles`` (a marketer defines campaigns)."""
    return _auth().mint(SUBJECT, roles or ROLES)


def channel(addr: str, *roles: str) -> grpc.Channel:
    return client.authorized(grpc.insecure_channel(addr), token(*roles))


def aio_channel(addr: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(addr, interceptors=[client.AioBearer(token())])


def ghz_metadata() -> list[str]:
    """ghz's flag for the same header."""
    return ["--metadata", json.dumps({"authorization": f"Bearer {token()}"})]


def nameko_context() -> dict[str, str]:
    """Context data for a ClusterRpcProxy: the principal the gateway would hand on."""
    principal = access.Principal(f"key:{SUBJECT}", ROLES, kind="api_key")
    return {access.CONTEXT_KEY: access.mint(principal, _auth().secret)}
