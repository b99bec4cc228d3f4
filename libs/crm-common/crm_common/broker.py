"""What each deployable may do on the bus: the configure / write / read regexes of its
broker user, derived from the registry (its queues, its own events exchange, the
exchanges it subscribes to, the RPC exchange, its reply queues). The cluster's users
(deploy/k8s, scripts/k8s_generate.py) and the local stack's (scripts/stack.py) get the
same, so a permission the code lacks fails locally first.

RabbitMQ's rules: declaring needs configure, publishing write on the exchange, binding
write on the queue and read on the exchange, consuming read on the queue.
"""
from __future__ import annotations

import re

from . import registry as bus
from .registry import Deployable

#: The reply queue of an RPC caller: the gateway's ``rpc.reply-gateway-<hex>``, nameko's
#: ``rpc.reply-<service>-<uuid4>`` (a service calling another, crm_common.nameko.remote).
REPLY_ID = "[0-9a-f-]+"


def _escape(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_.-]+", name):
        raise ValueError(f"{name!r}: a bus name with characters the permission regexes do not expect")
    return name.replace(".", r"\.")


def _queue_patterns(d: Deployable) -> list[str]:
    """d's queues, with the event queues of one source written once: evt-<source>-(a|b)--<d>."""
    patterns = [_escape(bus.rpc_queue(d.name))]
    by_source: dict[str, list[str]] = {}
    for sub in d.subscribes:
        if sub.is_timeline:
            patterns.append(_escape(sub.queue(d.name)))
        else:
            by_source.setdefault(sub.source, []).append(sub.event_type)
    for source, types in by_source.items():
        before, after = bus.event_queue(source, "\0", d.name).split("\0")
        inner = types[0] if len(types) == 1 else "(" + "|".join(types) + ")"
        patterns.append(_escape(before) + inner + _escape(after))
    assert all(any(re.fullmatch(p, q) for p in patterns) for q in d.queues), "a queue no pattern admits"
    return patterns


def _anchored(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    return "^(" + "|".join(unique) + ")$"


def reply_queue(d: Deployable) -> str:
    return _escape(f"rpc.reply-{d.name}-") + REPLY_ID


def permissions(d: Deployable) -> dict[str, str]:
    """configure / write / read regexes for d's broker user."""
    rpc = _escape(bus.RPC_EXCHANGE)
    replies = reply_queue(d)
    if d.kind == "gateway":
        mine = _anchored([rpc, replies])
        return {"configure": mine, "write": mine, "read": mine}
    own = _escape(bus.events_exchange(d.name))
    timeline = [_escape(bus.TIMELINE_EXCHANGE)] if d.timeline else []
    subscribed = [_escape(sub.exchange()) for sub in d.subscribes]
    queues = _queue_patterns(d)
    return {"configure": _anchored([rpc, own, *timeline, *subscribed, *queues, replies]),
            "write": _anchored([rpc, own, *timeline, *queues, replies]),
            "read": _anchored([rpc, *subscribed, *queues, replies])}


def user(d: Deployable) -> str:
    """The broker user of a deployable."""
    return d.name
