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

import logging

from nameko.extensions import DependencyProvider
from pymongo.errors import PyMongoError
from nameko.rpc import Rpc

from .. import access, audit
from ..errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)


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
        principal = None
        try:
            principal = self._provider.tokens.verify(self._worker_ctx.context_data.get(access.CONTEXT_KEY))
            self.access = policy.authorize(principal, service, method)
        except (Unauthenticated, PermissionDenied) as denied:
            stack = list(getattr(self._worker_ctx, "call_id_stack", None) or [])
            try:
                audit.record_denied(self._worker_ctx.service.store.db, service=service, method=method,
                                    principal=principal, reason=str(denied), request_id=stack[0] if stack else None)
            except PyMongoError as exc:   # the refusal stands; only its record is lost
                log.warning("refused call to %s.%s not recorded: %s", service, method, exc)
            raise
        return self.access

    @property
    def principal(self) -> access.Principal | None:
        """The authorized caller of an RPC; for a timer or an event handler, the service
        itself; None for a public RPC."""
        if self.access is not None:
            return self.access.principal
        return None if isinstance(self._worker_ctx.entrypoint, Rpc) else self._provider.own

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
        self.own = access.Principal(f"service:{name}", (access.SERVICE_ROLE,), kind="service", via=name)

    def worker_setup(self, worker_ctx) -> None:
        # A timer or an event handler acts as the service, also when the event it handles
        # carries the token of the call that published it (nameko propagates context data
        # to events; that token may have expired by the time a queue is caught up). Into
        # ``data``: ``context_data`` is a copy made on each read (nameko's WorkerContext);
        # ``data`` is what the worker's outgoing calls and events carry.
        if not isinstance(worker_ctx.entrypoint, Rpc):
            worker_ctx.data[access.CONTEXT_KEY] = self._own.token(self.own)

    def get_dependency(self, worker_ctx) -> CallerView:
        return CallerView(self, worker_ctx)
