"""Prometheus metrics, one naming scheme for every CRM process (DESIGN.md §10)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_REQUESTS = Counter("crm_rpc_requests_total", "RPC entrypoint calls by outcome",
                       ["service", "method", "outcome"])
RPC_DURATION = Histogram("crm_rpc_duration_seconds", "RPC entrypoint duration", ["service", "method"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("crm_events_published_total", "Events published", ["service", "event"])
EVENTS_HANDLED = Counter("crm_events_handled_total", "Event deliveries handled by outcome "
                         "(ok, duplicate, retried, parked)", ["service", "event", "outcome"])
EVENTS_RELAYED = Counter("crm_events_relayed_total", "Pending events re-published by the outbox relay",
                         ["service"])
EVENTS_PARKED = Gauge("crm_events_parked", "Event deliveries parked after failing; replay them",
                      ["service"])
STORE_DURATION = Histogram("crm_store_duration_seconds", "Time spent in store (database) calls",
                           ["service", "operation"],
                           buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1))
