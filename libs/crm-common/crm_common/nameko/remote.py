"""Calling another service's RPC from inside a service, with a deadline.

nameko's ``RpcProxy`` waits for a reply forever, and a request left in the queue of a
service that is down would run whenever it comes back, long after the caller gave up.
``remote("contacts")`` is an ``RpcProxy`` whose requests expire (message TTL) when the
caller stops waiting, and :func:`call` waits at most that long, then raises
:class:`~crm_common.errors.Unavailable`. The callee's typed errors come back as the
same classes (crm_common.nameko registers them). The principal of the current worker
travels with the call (nameko propagates context data, crm_common.access), so the
callee applies the original caller's permissions and scope.

Prefer events: a synchronous call belongs where the caller needs the answer now (a lead
conversion that must return the contact it created).
"""
from __future__ import annotations

from typing import Any

import eventlet
from nameko.rpc import RpcProxy

from ..errors import Unavailable

DEFAULT_TIMEOUT = 5.0


def remote(service: str, timeout: float = DEFAULT_TIMEOUT) -> RpcProxy:
    """A dependency calling ``service``; its requests expire after ``timeout`` seconds."""
    return RpcProxy(service, expiration=timeout)


def call(service_proxy, method: str, *, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
    """``service_proxy.<method>(**kwargs)`` (the injected proxy of :func:`remote`), at most
    ``timeout`` seconds."""
    reply = getattr(service_proxy, method).call_async(**kwargs)
    try:
        with eventlet.Timeout(timeout):
            return reply.result()
    except eventlet.Timeout:
        raise Unavailable(f"{service_proxy.service_name}.{method} did not answer within {timeout:g} s; retry",
                          {"service": service_proxy.service_name}) from None
