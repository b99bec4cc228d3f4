"""Who is calling this worker, verified: the service side of crm_common.access.

``caller = Caller()`` on every CrmService (crm_common.nameko.base). Every RPC checks,
before its body runs, that the call carries a valid internal token
(``nameko.crm_auth``, signed with ``CRM_INTERNAL_SECRET``) whose principal holds the
RPC's permission (access.toml); the body reads the result as ``self.caller.access``
(scope, masking). A service refuses to start without the secret.

Timers and event handlers have no caller: they act as ``service:<name>``, and their
token is put in the worker's context data, so an RPC they make to another service
carries it (nameko propagates context data to outgoing calls).
"""
from __future__ import annotations

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc

from .. import access


class CallerView:
    """One worker's caller. ``access`` is set once the RPC is authorized."""

    __slots__ = ("_provider", "_worker_ctx", "access")

    def __init__(self, provider: "Caller", worker_ctx):
        self._provider = provider
        self._worker_ctx = worker_ctx
        self.access: access.Access | None = None

    def authorize(self, service: str, method: str) -> access.Access | None:
        """Raises Unauthenticated / PermissionDenied; None for a public RPC."""
        policy = self._provider.policy
        if policy.permission(service, method) == access.PUBLIC:
            return None
        principal = self._provider.tokens.verify(self._worker_ctx.context_data.get(access.CONTEXT_KEY))
        self.access = policy.authorize(principal, service, method)
        return self.access

    @property
    def principal(self) -> access.Principal | None:
        return self.access.principal if self.access else None

    def mask(self, result):
        """``result`` with personal fields masked when the caller's roles may not see them."""
        if self.access is None or self.access.personal_data:
            return result
        return access.mask(result, self._provider.policy.personal_fields)


class Caller(DependencyProvider):
    def setup(self) -> None:
        secret = str(self.container.config.get("CRM_INTERNAL_SECRET") or "")
        self.tokens = access.InternalTokens(secret)
        self.policy = access.policy()
        name = self.container.service_name
        self._own = access.TokenCache(secret)
        self._self = access.Principal(f"service:{name}", (access.SERVICE_ROLE,), kind="service", via=name)

    def worker_setup(self, worker_ctx) -> None:
        if not isinstance(worker_ctx.entrypoint, Rpc) and access.CONTEXT_KEY not in worker_ctx.context_data:
            worker_ctx.context_data[access.CONTEXT_KEY] = self._own.token(self._self)

    def get_dependency(self, worker_ctx) -> CallerView:
        return CallerView(self, worker_ctx)
