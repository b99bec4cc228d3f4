"""amqp_rpc.AmqpRpcClient against the real RabbitMQ, with a fake nameko responder.

The responder (tests/support/fake_nameko.py) is a plain pika consumer in a thread that
behaves like a nameko service. Service names are
unique per run (``echo_<uuid>``) so no vhost is needed.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid

import pika
import pytest

from crm_common.errors import AlreadyExists, InvalidArgument, NotFound
from support.fake_nameko import FakeNamekoService
from crm_gateway.amqp_rpc import (
    AmqpRpcClient, RemoteError, RpcTimeout, ServiceUnavailable,
)

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5682/")

pytestmark = pytest.mark.integration


def _broker_up() -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URI)).close()
        return True
    except Exception:
        return False


if not _broker_up():  # pragma: no cover
    pytest.skip(f"RabbitMQ not reachable at {AMQP_URI} (scripts/infra.sh up)", allow_module_level=True)


def _slow(sleep=1.0):
    time.sleep(sleep)
    return "late"


def _raises(exc):
    def handler(**_):
        raise exc
    return handler


HANDLERS = {
    "echo": lambda **kw: kw,
    "add": lambda a, b: a + b,
    "invalid": _raises(InvalidArgument.field("email", "is not valid")),
    "exists": _raises(AlreadyExists("email taken by con_1", {"existing_id": "con_1"})),
    "missing": _raises(NotFound("no such contact")),
    "boom": _raises(KeyError("x")),
    "slow": _slow,
}


@pytest.fixture(scope="module")
def service():
    with FakeNamekoService(AMQP_URI, f"echo_{uuid.uuid4().hex[:12]}", HANDLERS) as svc:
        yield svc


def run(coro):
    return asyncio.run(coro)


async def _client() -> AmqpRpcClient:
    client = AmqpRpcClient(AMQP_URI, name="gateway-test")
    assert await client.start(wait=5.0), "client did not connect"
    return client


def test_result_round_trip_and_call_id_header(service):
    async def main():
        client = await _client()
        try:
            res = await client.call(service.service, "echo", {"x": 1, "s": "سلام", "l": [1, None]},
                                    timeout=5, call_id="gateway.Echo.abc123")
            assert res == {"x": 1, "s": "سلام", "l": [1, None]}
            assert await client.call(service.service, "add", {"a": 2, "b": 3}, timeout=5) == 5
            assert client.in_flight == 0
        finally:
            await client.close()
    run(main())
    assert {"nameko.call_id_stack": ["gateway.Echo.abc123"]} in [headers for _, _, headers in service.requests]


def test_typed_errors_round_trip(service):
    async def main():
        client = await _client()
        try:
            with pytest.raises(InvalidArgument) as ei:
                await client.call(service.service, "invalid", {}, timeout=5)
            assert ei.value.violations == [{"field": "email", "description": "is not valid"}]
            with pytest.raises(AlreadyExists) as ea:
                await client.call(service.service, "exists", {}, timeout=5)
            assert ea.value.details["existing_id"] == "con_1"
            with pytest.raises(NotFound):
                await client.call(service.service, "missing", {}, timeout=5)
            with pytest.raises(RemoteError) as er:
                await client.call(service.service, "boom", {}, timeout=5)
            assert er.value.exc_type == "KeyError"
        finally:
            await client.close()
    run(main())


def test_timeout_raises_deadline_error_and_drops_the_call(service):
    async def main():
        client = await _client()
        try:
            t0 = time.monotonic()
            with pytest.raises(RpcTimeout):
                await client.call(service.service, "slow", {"sleep": 0.8}, timeout=0.2)
            assert time.monotonic() - t0 < 0.6
            assert client.in_flight == 0
            # the late reply is ignored and the client keeps working
            await asyncio.sleep(0.8)
            assert await client.call(service.service, "add", {"a": 1, "b": 1}, timeout=5) == 2
        finally:
            await client.close()
    run(main())


def test_200_concurrent_calls(service):
    async def main():
        client = await _client()
        try:
            results = await asyncio.gather(*(
                client.call(service.service, "add", {"a": i, "b": 1000}, timeout=10) for i in range(200)))
            assert results == [i + 1000 for i in range(200)]
            assert client.in_flight == 0
        finally:
            await client.close()
    run(main())


def test_unknown_service_is_unavailable_fast():
    async def main():
        client = await _client()
        try:
            t0 = time.monotonic()
            with pytest.raises(ServiceUnavailable):
                await client.call(f"nobody_{uuid.uuid4().hex[:8]}", "ping", {}, timeout=5)
            assert time.monotonic() - t0 < 1.0
        finally:
            await client.close()
    run(main())


def test_a_request_queued_past_its_deadline_is_never_executed():
    # The service's queue exists (it was running) but nobody consumes (it is down).
    service = f"down_{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URI))
    ch = conn.channel()
    ch.exchange_declare("nameko-rpc", "topic", durable=True)
    ch.queue_declare(f"rpc-{service}", auto_delete=False)
    ch.queue_bind(f"rpc-{service}", "nameko-rpc", routing_key=f"{service}.*")

    async def main():
        client = await _client()
        try:
            with pytest.raises(RpcTimeout):
                await client.call(service, "create_contact", {"contact": {}}, timeout=0.3)
        finally:
            await client.close()
    try:
        run(main())
        time.sleep(0.2)
        # expired in the queue: a service starting now finds nothing to execute late
        assert ch.queue_declare(f"rpc-{service}", passive=True).method.message_count == 0
    finally:
        ch.queue_delete(f"rpc-{service}")
        conn.close()


class TcpProxy:
    """A TCP relay in front of the broker: dropping it simulates a broker crash/restart."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers += [writer, up_writer]

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except Exception:
                pass
            finally:
                w.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self):
        """Broker goes away: refuse new connections, reset the open ones."""
        self.server.close()
        await self.server.wait_closed()
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


def test_broker_down_fails_fast_then_reconnects(service):
    async def main():
        params = pika.URLParameters(AMQP_URI)
        proxy = TcpProxy(params.host, params.port)
        await proxy.start()
        uri = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        states: list[bool] = []
        client = AmqpRpcClient(uri, name="gateway-test", min_backoff=0.05, max_backoff=0.2,
                               on_state_change=states.append)
        assert await client.start(wait=5.0)
        try:
            assert await client.call(service.service, "add", {"a": 1, "b": 1}, timeout=5) == 2
            # a call in flight when the broker dies fails at once, not at its timeout
            in_flight = asyncio.ensure_future(
                client.call(service.service, "slow", {"sleep": 0.5}, timeout=10))
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            await proxy.stop()
            with pytest.raises(ServiceUnavailable):
                await in_flight
            assert time.monotonic() - t0 < 1.0
            # while it is down, calls fail fast
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            with pytest.raises(ServiceUnavailable):
                await client.call(service.service, "add", {"a": 1, "b": 1}, timeout=5)
            assert time.monotonic() - t0 < 0.1
            assert not client.connected
            # the broker is back: the client reconnects by itself
            await proxy.start()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if client.connected:
                    break
            assert client.connected, "client did not reconnect"
            assert await client.call(service.service, "add", {"a": 2, "b": 2}, timeout=5) == 4
            assert states[:3] == [True, False, True]
        finally:
            await client.close()
            await proxy.stop()
    run(main())
