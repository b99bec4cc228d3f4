"""The peer baseline: contacts.get_contact through nameko's own ClusterRpcProxy, what a
team would write without our gateway. No gRPC hop, so the gateway pays one more hop.

    python -m bench.peer        spec as JSON on stdin: amqp_uri, contact_ids, in_flight, duration, warmup

One green thread per request in flight, each with its own proxy: a ClusterRpcProxy
(one connection, one reply queue) must not be shared by green threads calling at once.
Runs in its own process: eventlet's monkey patching never enters the harness.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from .credentials import nameko_context  # noqa: E402
from .procs import Marks  # noqa: E402
from .stats import summarize  # noqa: E402


def run(spec: dict) -> dict:
    ids = spec["contact_ids"]
    config = {"AMQP_URI": spec["amqp_uri"], "serializer": "json"}
    context = nameko_context()
    latencies: list[float] = []
    errors: Counter = Counter()
    state = {"measuring": False, "stop_at": float("inf"), "ready": 0}
    go = eventlet.Event()

    def worker(k: int) -> None:
        with ClusterRpcProxy(config, timeout=10, context_data=context) as rpc:
            state["ready"] += 1
            go.wait()
            n = k
            while True:
                t0 = time.perf_counter()
                if t0 >= state["stop_at"]:
                    return
                try:
                    rpc.contacts.get_contact(contact_id=ids[n % len(ids)])
                    failed = None
                except Exception as exc:  # noqa: BLE001 - counted by type
                    failed = type(exc).__name__
                t1 = time.perf_counter()
                n += spec["in_flight"]
                if state["measuring"] and t1 <= state["stop_at"]:
                    if failed:
                        errors[failed] += 1
                    else:
                        latencies.append(t1 - t0)

    pool = [eventlet.spawn(worker, k) for k in range(spec["in_flight"])]
    while state["ready"] < spec["in_flight"]:  # connections and reply queues are set-up, not load
        eventlet.sleep(0.01)
    go.send(True)
    eventlet.sleep(spec["warmup"])
    state["measuring"] = True
    Marks.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    state["stop_at"] = t0 + spec["duration"]
    eventlet.sleep(spec["duration"])
    cpu1, window = time.process_time(), time.perf_counter() - t0
    Marks.end()
    for g in pool:
        g.wait()
    result = summarize(latencies, window, sum(errors.values()), errors)
    result["load_cpu"] = round((cpu1 - cpu0) / window * 100, 1)
    return result


if __name__ == "__main__":
    Marks.result(run(json.load(sys.stdin)))
