"""For clients of the gateway written in Python (the demo loader, the benchmark, the
tests): a channel whose every call carries ``authorization: Bearer <token>``.

    channel = client.authorized(grpc.insecure_channel(addr), token)
    async with grpc.aio.insecure_channel(addr, interceptors=[client.AioBearer(token)]) as channel: ...
"""
from __future__ import annotations

import grpc


def _with_token(details, token: str):
    metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
    return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.credentials = d.method, d.timeout, d.credentials
        self.wait_for_ready, self.compression = getattr(d, "wait_for_ready", None), getattr(d, "compression", None)
        self.metadata = metadata


class Bearer(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, token: str):
        self.token = token

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(_with_token(client_call_details, self.token), request)


class AioBearer(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str):
        self.token = token

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_with_token(client_call_details, self.token), request)


def authorized(channel: grpc.Channel, token: str) -> grpc.Channel:
    return grpc.intercept_channel(channel, Bearer(token))
