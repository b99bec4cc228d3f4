"""nameko's RPC and event-handler entrypoints, made to survive a broker outage.

nameko 2.14 sends an RPC reply and acks the request (``RpcConsumer.handle_result``,
nameko/rpc.py) and acks a handled event (``Consumer.handle_message_processed``,
nameko/messaging.py) inside the worker's green thread, after the service method
returned. An exception there escapes the worker, and the container treats any
uncaught error in a thread as fatal (``ServiceContainer._handle_thread_exited``
kills itself): when the broker goes away mid-call, the reply's publish raises
``OperationalError: ECONNREFUSED`` once kombu's retries run out, or the ack raises
``ConnectionResetError`` (``QueueConsumer.ack_message`` only catches amqp's own
``ConnectionError``), and ``nameko run`` exits. Nothing restarts it locally.

Both are losses the design already accepts: a reply that cannot be sent means the
caller times out (the gateway answers DEADLINE_EXCEEDED/UNAVAILABLE); an unacked
delivery is requeued by the broker with the dead connection and redelivered. So here
they are logged and the service carries on; the QueueConsumer reconnects by itself.

Replies are published without publisher confirms (:class:`ReplyPublisher`), events
with them.
"""
from __future__ import annotations

import logging

import amqp.exceptions
import kombu.exceptions
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, DEFAULT_TRANSPORT_OPTIONS,
    LOGIN_METHOD_CONFIG_KEY, SERIALIZER_CONFIG_KEY,
)
from kombu import Exchange, Queue
from nameko.events import EventHandler
from nameko.messaging import Consumer, QueueConsumer
from nameko.rpc import Responder, Rpc, RpcConsumer, get_rpc_exchange
from nameko.standalone.events import get_event_exchange

from ..registry import TIMELINE_EXCHANGE, Subscription

log = logging.getLogger(__name__)

# What talking to an unreachable broker raises: socket errors (OSError), kombu's
# wrapper once its retries are spent, py-amqp's connection errors.
BROKER_ERRORS = (OSError, kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError)


class SafeQueueConsumer(QueueConsumer):
    """nameko's QueueConsumer whose ack/requeue tolerate a connection that just died.
    The broker requeues whatever was unacked on it, so there is nothing to do."""

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except BROKER_ERRORS as exc:
            log.warning("ack lost with the broker connection (%s); the broker redelivers", exc)

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except BROKER_ERRORS as exc:
            log.warning("requeue lost with the broker connection (%s); the broker redelivers", exc)


class ReplyPublisher(Publisher):
    """Replies without publisher confirms. A reply is ephemeral: if the broker loses it
    the caller times out (DEADLINE_EXCEEDED at the gateway) and may retry, so waiting
    for the broker's ack on every reply bought nothing but a round trip and the CPU to
    process it. Events keep confirms (nameko's EventDispatcher): they carry facts, and
    the outbox marks an event sent only once the broker has it. A pooled connection the
    broker closed is still noticed before the write (py-amqp reads pending frames before
    each publish), so kombu reconnects and retries as with confirms."""

    use_confirms = False
    # Its own dict: Publisher.publish writes 'confirm_publish' into the class-level
    # transport_options it is given, and kombu's connection pools keep a reference to it,
    # so sharing nameko's would let replies turn confirms off for events' reconnections.
    transport_options = DEFAULT_TRANSPORT_OPTIONS.copy()


class ReplyResponder(Responder):
    publisher_cls = ReplyPublisher


class CrmRpcConsumer(RpcConsumer):
    queue_consumer = SafeQueueConsumer()

    def setup(self):
        # A plain nameko @rpc in the same service gets a second RpcConsumer on the same
        # rpc-<service> queue, and each answers MethodNotFound for the other's methods.
        plain = sorted(e.method_name for e in self.container.entrypoints
                       if isinstance(e, Rpc) and not isinstance(e, CrmRpc))
        if plain:
            raise TypeError(f"{self.container.service_name}: {', '.join(plain)} use nameko's @rpc; "
                            "use crm_common.nameko.base.rpc for every RPC of a CrmService")
        super().setup()

    def handle_result(self, message, result, exc_info):
        """nameko's RpcConsumer.handle_result, except that a reply which cannot be
        published is logged and dropped instead of killing the service."""
        config = self.container.config
        responder = ReplyResponder(
            config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except BROKER_ERRORS as exc:
            log.warning("reply to %s lost, broker unreachable (%s); the caller times out",
                        message.delivery_info.get("routing_key"), exc)
        except Exception:  # noqa: BLE001 - one bad reply must not take every worker down
            log.exception("reply to %s could not be published; the caller times out",
                          message.delivery_info.get("routing_key"))
        self.queue_consumer.ack_message(message)
        return result, exc_info


class CrmRpc(Rpc):
    """``@rpc`` entrypoint on :class:`CrmRpcConsumer`; every RPC method of a service
    must use it (crm_common.nameko.base.rpc), which the consumer checks at start-up."""

    rpc_consumer = CrmRpcConsumer()


def timeline_exchange() -> Exchange:
    return Exchange(TIMELINE_EXCHANGE, type="topic", durable=True, delivery_mode=2)


class CrmEventHandler(EventHandler):
    """nameko's SERVICE_POOL event handler on :class:`SafeQueueConsumer` (the same shared
    consumer and connection as :class:`CrmRpc`), on the queue the registry names
    (crm_common.registry: ``evt-<source>-<type>--<consumer>``, one per consuming service
    and event type, whatever the handler method is called), or, for source "timeline",
    on the ``crm.timeline`` stream every producer publishes its timeline facts to."""

    queue_consumer = SafeQueueConsumer()

    def setup(self):
        sub = Subscription(self.source_service, "" if self.source_service == "timeline" else self.event_type)
        if sub.is_timeline:
            exchange, routing_key = timeline_exchange(), "#"
        else:
            exchange, routing_key = get_event_exchange(self.source_service, self.container.config), self.event_type
        self.queue = Queue(sub.queue(self.container.service_name), exchange=exchange, routing_key=routing_key,
                           durable=True, auto_delete=False, exclusive=False)
        Consumer.setup(self)   # not EventHandler.setup, which would name the queue after the method
