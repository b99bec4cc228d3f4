"""An asyncio RPC client that speaks nameko's AMQP RPC protocol, on pika's AsyncioConnection.

It runs on the same event loop as the grpc.aio server, so a call is a publish plus a
Future: no threads, no eventlet, no nameko import.

Protocol (nameko 2.14, ``nameko.rpc``):

* request: exchange ``nameko-rpc`` (topic, durable), routing key ``<service>.<method>``,
  JSON body ``{"args": [...], "kwargs": {...}}``, properties ``reply_to`` (a routing key
  bound on ``nameko-rpc`` to our reply queue), ``correlation_id``,
  ``content_type="application/json"``, persistent delivery, headers carrying nameko's
  context data (``nameko.call_id_stack``).
* reply: published by the service on ``nameko-rpc`` with routing key = our ``reply_to``
  and the same ``correlation_id``; body ``{"result": ..., "error": null}`` or
  ``{"result": null, "error": {"exc_type", "exc_path", "value", "exc_args"}}``.

One connection and one channel multiplex every call in flight (``correlation_id`` ->
Future). Requests are published ``mandatory``: when no service queue is bound for the
routing key the broker returns the message and the call fails at once with
:class:`ServiceUnavailable`. While the broker is unreachable calls fail fast with
:class:`ServiceUnavailable`; a background task reconnects with backoff.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Callable

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from crm_common.errors import CrmError, from_remote

log = logging.getLogger("crm_gateway.amqp_rpc")

RPC_EXCHANGE = "nameko-rpc"
CALL_ID_STACK_HEADER = "nameko.call_id_stack"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class RpcError(Exception):
    """Base of the transport-level failures of an RPC (not the service's own errors)."""


class ServiceUnavailable(RpcError):
    """The broker is not connected, or no service consumes the routing key."""


class RpcTimeout(RpcError):
    """No reply before the call's timeout (the caller's deadline)."""


class RemoteError(RpcError):
    """The service failed with an error that is not one of crm_common's typed errors."""

    def __init__(self, exc_type: str, value: str, exc_path: str = ""):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type
        self.value = value
        self.exc_path = exc_path


def remote_error(err: Any) -> Exception:
    """Turn a nameko ``error`` dict into the exception to raise."""
    if not isinstance(err, dict):
        return RemoteError("UnknownError", str(err))
    typed = from_remote(err)
    if typed is not None:
        return typed
    return RemoteError(str(err.get("exc_type", "UnknownError")), str(err.get("value", "")),
                       str(err.get("exc_path") or ""))


class _Pending:
    __slots__ = ("future", "timer", "routing_key")

    def __init__(self, future: asyncio.Future, timer: asyncio.TimerHandle, routing_key: str):
        self.future = future
        self.timer = timer
        self.routing_key = routing_key


class AmqpRpcClient:
    """Long-lived nameko RPC client. ``await start()`` once, then ``await call(...)``."""

    def __init__(self, uri: str, *, name: str = "gateway",
                 min_backoff: float = 0.2, max_backoff: float = 5.0,
                 connect_timeout: float = 5.0,
                 on_state_change: Callable[[bool], None] | None = None):
        self._params = pika.URLParameters(uri)
        if "heartbeat" not in uri:
            self._params.heartbeat = 30
        self._params.blocked_connection_timeout = 30
        self._params.socket_timeout = connect_timeout
        self._params.client_properties = {"connection_name": f"{name}-rpc-client"}
        self._name = name
        self.reply_key = f"rpc.reply-{name}-{uuid.uuid4().hex}"
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._on_state_change = on_state_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AsyncioConnection | None = None
        self._channel = None
        self._ready = False
        self._closing = False
        self._pending: dict[str, _Pending] = {}
        self._attempt_done: asyncio.Future | None = None
        self._ready_event: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None
        self._seq = 0
        self._cid_prefix = uuid.uuid4().hex[:16] + "-"
        self._props_cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self._ready

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def start(self, wait: float | None = 5.0) -> bool:
        """Start the connect/reconnect loop; wait up to ``wait`` s for the first connection.

        Returns whether the client is connected. Not being connected is not an error:
        calls fail fast with ServiceUnavailable until the broker is back.
        """
        self._loop = asyncio.get_running_loop()
        self._ready_event = asyncio.Event()
        self._closing = False
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._run(), name="amqp-rpc-supervisor")
        if wait:
            try:
                await asyncio.wait_for(self._ready_event.wait(), wait)
            except asyncio.TimeoutError:
                pass
        return self._ready

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):
                pass
            self._supervisor = None
        conn = self._conn
        if conn is not None and not (conn.is_closed or conn.is_closing):
            done = self._attempt_done
            try:
                conn.close()
            except Exception:  # pragma: no cover - already closing
                pass
            if done is not None and not done.done():
                try:
                    await asyncio.wait_for(asyncio.shield(done), 2.0)
                except (asyncio.TimeoutError, Exception):
                    pass
        self._set_ready(False)
        self._fail_all(ServiceUnavailable("rpc client closed"))

    async def _run(self) -> None:
        backoff = self._min_backoff
        while not self._closing:
            self._attempt_done = self._loop.create_future()
            was_ready = False
            try:
                self._connect()
                was_ready = await self._attempt_done
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # pragma: no cover - defensive
                log.warning("amqp connect failed: %s", exc)
            if self._closing:
                return
            if was_ready:
                backoff = self._min_backoff
            log.warning("amqp rpc client disconnected; reconnecting in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _connect(self) -> None:
        self._conn = AsyncioConnection(
            self._params,
            on_open_callback=self._on_conn_open,
            on_open_error_callback=self._on_conn_open_error,
            on_close_callback=self._on_conn_closed,
            custom_ioloop=self._loop,
        )

    def _finish_attempt(self, was_ready: bool) -> None:
        fut = self._attempt_done
        if fut is not None and not fut.done():
            fut.set_result(was_ready)

    def _on_conn_open_error(self, _conn, exc) -> None:
        log.warning("amqp connection failed: %s", exc)
        self._finish_attempt(False)

    def _on_conn_closed(self, _conn, reason) -> None:
        was_ready = self._ready
        self._set_ready(False)
        self._channel = None
        self._fail_all(ServiceUnavailable("broker connection lost"))
        if not self._closing:
            log.warning("amqp connection closed: %s", reason)
        self._finish_attempt(was_ready)

    def _on_conn_open(self, conn) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.exchange_declare(RPC_EXCHANGE, "topic", durable=True,
                                 callback=self._on_exchange_ok)

    def _on_channel_closed(self, _channel, reason) -> None:
        # A channel error (e.g. a declare mismatch) takes the whole client down and
        # back up through the connection's reconnect loop.
        self._set_ready(False)
        self._channel = None
        self._fail_all(ServiceUnavailable("broker channel closed"))
        conn = self._conn
        if conn is not None and not (conn.is_closed or conn.is_closing):
            log.warning("amqp channel closed: %s", reason)
            conn.close()

    def _on_exchange_ok(self, _frame) -> None:
        self._channel.queue_declare(self.reply_key, exclusive=True, auto_delete=True,
                                    callback=self._on_queue_ok)

    def _on_queue_ok(self, _frame) -> None:
        self._channel.queue_bind(self.reply_key, RPC_EXCHANGE, routing_key=self.reply_key,
                                 callback=self._on_bind_ok)

    def _on_bind_ok(self, _frame) -> None:
        self._channel.basic_consume(self.reply_key, self._on_reply, auto_ack=True,
                                    exclusive=True, callback=self._on_consume_ok)

    def _on_consume_ok(self, _frame) -> None:
        log.info("amqp rpc client ready (reply queue %s)", self.reply_key)
        self._set_ready(True)

    def _set_ready(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        if self._ready_event is not None:
            if ready:
                self._ready_event.set()
            else:
                self._ready_event.clear()
        if self._on_state_change is not None:
            try:
                self._on_state_change(ready)
            except Exception:  # pragma: no cover
                log.exception("state-change callback failed")

    def _fail_all(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.timer.cancel()
            if not p.future.done():
                p.future.set_exception(exc)

    # ------------------------------------------------------------------ calls
    async def call(self, service: str, method: str, kwargs: dict[str, Any] | None = None, *,
                   timeout: float = 10.0, call_id: str | None = None,
                   args: list[Any] | None = None, context: dict[str, str] | None = None) -> Any:
        """Call ``service.method(**kwargs)`` and return its result. ``context``: more of
        nameko's context data (each key travels as the header ``nameko.<key>``).

        Raises the service's typed :class:`crm_common.errors.CrmError`, or
        :class:`RemoteError`, :class:`RpcTimeout`, :class:`ServiceUnavailable`.
        """
        channel = self._channel
        if not self._ready or channel is None:
            raise ServiceUnavailable("message broker unavailable")
        if timeout <= 0:
            raise RpcTimeout(f"{service}.{method}: deadline already passed")
        self._seq += 1
        correlation_id = self._cid_prefix + str(self._seq)
        routing_key = f"{service}.{method}"
        if call_id is None:
            call_id = f"{self._name}.{method}.{uuid.uuid4().hex}"
        body = _dumps({"args": args or [], "kwargs": kwargs or {}}).encode()
        props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            reply_to=self.reply_key,
            correlation_id=correlation_id,
            headers={CALL_ID_STACK_HEADER: [call_id],
                     **{f"nameko.{k}": v for k, v in (context or {}).items()}},
            # A request still queued when its caller's deadline passes (the service is
            # down or swamped) is dropped by the broker instead of being executed late,
            # after the caller was told DEADLINE_EXCEEDED.
            expiration=str(max(1, int(timeout * 1000))),
        )
        loop = self._loop
        future = loop.create_future()
        timer = loop.call_later(timeout, self._on_timeout, correlation_id)
        self._pending[correlation_id] = _Pending(future, timer, routing_key)
        try:
            channel.basic_publish(RPC_EXCHANGE, routing_key, body, props, mandatory=True)
        except Exception as exc:
            self._drop(correlation_id)
            raise ServiceUnavailable(f"publish failed: {exc}") from exc
        try:
            return await future
        finally:
            # cancellation (client went away) or any outcome: forget the call
            p = self._pending.pop(correlation_id, None)
            if p is not None:
                p.timer.cancel()

    def _drop(self, correlation_id: str) -> _Pending | None:
        p = self._pending.pop(correlation_id, None)
        if p is not None:
            p.timer.cancel()
        return p

    def _on_timeout(self, correlation_id: str) -> None:
        p = self._pending.pop(correlation_id, None)
        if p is not None and not p.future.done():
            p.future.set_exception(RpcTimeout(f"{p.routing_key}: no reply before the deadline"))

    def _on_return(self, _channel, _method, props, _body) -> None:
        p = self._drop(props.correlation_id)
        if p is not None and not p.future.done():
            p.future.set_exception(ServiceUnavailable(f"{p.routing_key}: no service is consuming"))

    def _on_reply(self, _channel, _method, props, body) -> None:
        p = self._pending.pop(props.correlation_id, None)
        if p is None:
            return  # late reply of a call that timed out or was cancelled
        p.timer.cancel()
        fut = p.future
        if fut.done():
            return
        try:
            msg = _loads(body)
            err = msg.get("error")
        except Exception as exc:
            fut.set_exception(RemoteError("MalformedReply", str(exc)))
            return
        if err is not None:
            fut.set_exception(remote_error(err))
        else:
            fut.set_result(msg.get("result"))


__all__ = ["AmqpRpcClient", "RpcError", "ServiceUnavailable", "RpcTimeout", "RemoteError",
           "remote_error", "CrmError", "RPC_EXCHANGE", "CALL_ID_STACK_HEADER"]
