"""A closed-loop gRPC load generator on grpc.aio, for when ghz is not built.

Run as a child process (``python -m bench.pyload``, spec as JSON on stdin, see
bench.load.run) so its CPU is its own. Understands the same request data as ghz:
a list used round robin, ``{{.RequestNumber}}`` and ``{{newUUID}}``.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory

from crm_gateway.bridge import load_api

from . import credentials
from .procs import Marks
from .stats import summarize

load_api()   # every crm.v1 service and message in the descriptor pool


class Requests:
    """The n-th request of a run, rendered like ghz renders its data templates."""

    def __init__(self, request_class, data):
        self.cls = request_class
        self.items = [json.dumps(d) for d in (data if isinstance(data, list) else [data])]
        self.fixed = None if any("{{" in i for i in self.items) else [self._parse(i) for i in self.items]

    def _parse(self, text: str):
        return json_format.Parse(text, self.cls())

    def __call__(self, n: int):
        if self.fixed is not None:
            return self.fixed[n % len(self.fixed)]
        text = self.items[n % len(self.items)]
        text = text.replace("{{.RequestNumber}}", str(n)).replace("{{newUUID}}", str(uuid.uuid4()))
        return self._parse(text)


async def load(spec: dict) -> dict:
    load_api()   # every crm.v1 service's messages into the descriptor pool
    method = descriptor_pool.Default().FindMethodByName(spec["method"])
    request_class = message_factory.GetMessageClass(method.input_type)
    reply_class = message_factory.GetMessageClass(method.output_type)
    requests = Requests(request_class, spec["data"])
    path = f"/{method.containing_service.full_name}/{method.name}"
    counter = iter(range(10**12))
    latencies: list[float] = []
    errors: Counter = Counter()
    async with credentials.aio_channel(spec["addr"]) as channel:
        stub = channel.unary_unary(path, request_serializer=request_class.SerializeToString,
                                   response_deserializer=reply_class.FromString)
        measuring = False
        stop_at = time.perf_counter() + spec["warmup"] + spec["duration"]

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await stub(requests(next(counter)), timeout=10)
                    failed = None
                except grpc.aio.AioRpcError as exc:
                    failed = exc.code().name
                t1 = time.perf_counter()
                if measuring and t1 <= stop_at:  # in flight at the end: neither success nor error
                    if failed:
                        errors[failed] += 1
                    else:
                        latencies.append(t1 - t0)

        tasks = [asyncio.create_task(worker()) for _ in range(spec["in_flight"])]
        await asyncio.sleep(spec["warmup"])
        measuring = True
        Marks.start()
        cpu0, t_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu1, window = time.process_time(), time.perf_counter() - t_start
        Marks.end()
        await asyncio.gather(*tasks)
    result = summarize(latencies, window, sum(errors.values()), errors)
    result["load_cpu"] = round((cpu1 - cpu0) / window * 100, 1)
    return result


def main() -> None:
    Marks.result(asyncio.run(load(json.load(sys.stdin))))


if __name__ == "__main__":
    main()
