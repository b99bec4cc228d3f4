"""The AMQP floor: a raw pika request/reply echo carrying what the gateway's calls carry.

    python -m bench.amqp_echo responder AMQP_URI SERVICE     answers SERVICE.echo
    python -m bench.amqp_echo client                         spec as JSON on stdin

The messages are shaped like the gateway's nameko RPCs (bench.amqp_echo.properties
mirrors crm_gateway.amqp_rpc): exchange ``nameko-rpc``, routing key
``<service>.echo``, a JSON body, persistent delivery, a call-id header, an expiry,
``mandatory``; the responder's queue is declared as nameko declares ``rpc-<service>``
and it acks after replying, with nameko's default prefetch. What remains is the
broker and pika on both ends: no nameko, no eventlet, no gRPC.
"""
from __future__ import annotations

import base64
import json
import sys
import time

import pika

from .procs import Marks
from .stats import summarize

EXCHANGE = "nameko-rpc"
PREFETCH = 10  # nameko's prefetch = max_workers, 10 by default


def properties(reply_to: str, correlation_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                reply_to=reply_to, correlation_id=correlation_id,
                                headers={"nameko.call_id_stack": [f"bench.echo.{correlation_id}"]},
                                expiration="10000")


def responder(amqp_uri: str, service: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "topic", durable=True)
    queue = f"rpc-{service}"
    ch.queue_declare(queue, durable=True, auto_delete=True)
    ch.queue_bind(queue, EXCHANGE, routing_key=f"{service}.*")
    ch.basic_qos(prefetch_count=PREFETCH)

    def on_request(channel, method, props, body):
        payload = json.loads(body)["kwargs"].get("payload")  # decode and encode, as nameko does
        channel.basic_publish(EXCHANGE, props.reply_to, json.dumps({"result": payload, "error": None}),
                              pika.BasicProperties(correlation_id=props.correlation_id,
                                                   content_type="application/json", delivery_mode=2))
        channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_request)
    print("ready", flush=True)
    ch.start_consuming()


def client(spec: dict) -> dict:
    """``in_flight`` requests outstanding for ``warmup`` + ``duration`` seconds."""
    conn = pika.BlockingConnection(pika.URLParameters(spec["amqp_uri"]))
    ch = conn.channel()
    reply = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(reply, EXCHANGE, routing_key=reply)
    routing_key = f"{spec['service']}.echo"
    body = json.dumps({"args": [], "kwargs": {"payload": base64.b64encode(b"x" * 16).decode()}}).encode()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    state = {"seq": 0, "measuring": False, "stop_at": float("inf")}

    def send() -> None:
        state["seq"] += 1
        cid = str(state["seq"])
        sent[cid] = time.perf_counter()
        ch.basic_publish(EXCHANGE, routing_key, body, properties(reply, cid), mandatory=True)

    def start_window() -> None:
        state["cpu0"], state["t0"] = time.process_time(), time.perf_counter()
        state["measuring"], state["stop_at"] = True, state["t0"] + spec["duration"]
        Marks.start()

    def end_window() -> None:
        if "window" not in state:
            state["cpu1"], state["window"] = time.process_time(), time.perf_counter() - state["t0"]
            Marks.end()

    def on_reply(_ch, _method, props, body_):
        t1 = time.perf_counter()
        t0 = sent.pop(props.correlation_id)
        json.loads(body_)["result"]  # the gateway decodes every reply too
        if t1 <= state["stop_at"]:
            if state["measuring"]:
                latencies.append(t1 - t0)
            send()
            return
        end_window()  # in flight at the end: neither success nor error
        if not sent:
            ch.stop_consuming()

    ch.basic_consume(reply, on_reply, auto_ack=True)
    for _ in range(spec["in_flight"]):
        send()
    conn.call_later(spec["warmup"], start_window)
    conn.call_later(spec["warmup"] + spec["duration"] + 10, ch.stop_consuming)  # replies lost: give up
    ch.start_consuming()
    conn.close()
    if "t0" not in state:
        start_window()
    end_window()
    lost = len(sent)  # still unanswered when the safety timer gave up
    result = summarize(latencies, state["window"], errors=lost, error_kinds={"no reply": lost} if lost else {})
    result["load_cpu"] = round((state["cpu1"] - state["cpu0"]) / state["window"] * 100, 1)
    return result


def main(argv: list[str]) -> None:
    if argv[1] == "responder":
        responder(argv[2], argv[3])
    else:
        Marks.result(client(json.load(sys.stdin)))


if __name__ == "__main__":
    main(sys.argv)
