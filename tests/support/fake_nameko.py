"""A fake nameko service for tests: a pika consumer in a thread speaking nameko's RPC protocol.

``FakeNamekoService("contacts_ab12", {"get_contact": fn})`` declares ``rpc-<service>`` bound
to ``nameko-rpc`` with ``<service>.*`` (like nameko) and answers with ``fn(**kwargs)``;
a handler raising a ``crm_common.errors.CrmError`` replies with nameko's error dict.
Records each request (method, kwargs, headers) in ``requests``.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import pika

from crm_common.errors import CrmError


def error_dict(exc: BaseException) -> dict[str, Any]:
    """nameko.exceptions.serialize for our errors (exc_args = [message, details])."""
    cls = type(exc)
    return {"exc_type": cls.__name__, "exc_path": f"{cls.__module__}.{cls.__name__}",
            "value": str(exc), "exc_args": list(exc.args)}


class FakeNamekoService:
    def __init__(self, amqp_uri: str, service: str, handlers: dict[str, Callable[..., Any]]):
        self.amqp_uri = amqp_uri
        self.service = service
        self.handlers = handlers
        self.requests: list[tuple[str, dict, dict]] = []
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"fake-{service}")

    def __enter__(self) -> "FakeNamekoService":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake service did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self._thread.join(10)

    def _reply(self, method: str, kwargs: dict) -> dict:
        fn = self.handlers.get(method)
        if fn is None:
            return {"result": None, "error": {"exc_type": "MethodNotFound",
                                              "exc_path": "nameko.exceptions.MethodNotFound",
                                              "value": method, "exc_args": [method]}}
        try:
            return {"result": fn(**kwargs), "error": None}
        except CrmError as exc:
            return {"result": None, "error": error_dict(exc)}
        except Exception as exc:
            return {"result": None, "error": error_dict(exc)}

    def _run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
        ch = conn.channel()
        ch.exchange_declare("nameko-rpc", "topic", durable=True)
        queue = f"rpc-{self.service}"
        ch.queue_declare(queue, auto_delete=True)
        ch.queue_bind(queue, "nameko-rpc", routing_key=f"{self.service}.*")
        ch.basic_qos(prefetch_count=100)

        def on_message(ch_, method, props, body):
            payload = json.loads(body)
            name = method.routing_key.split(".", 1)[1]
            self.requests.append((name, payload.get("kwargs", {}), dict(props.headers or {})))
            reply = self._reply(name, payload.get("kwargs", {}))
            ch_.basic_publish("nameko-rpc", props.reply_to, json.dumps(reply),
                              pika.BasicProperties(correlation_id=props.correlation_id,
                                                   content_type="application/json"))
            ch_.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_message)
        self._ready.set()
        while not self._stop:
            conn.process_data_events(time_limit=0.05)
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
