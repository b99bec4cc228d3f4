"""The service desk's business metrics (crm_<service>_...): what ops and support leads
watch on the business dashboard and alert on (deploy/k8s/components/monitoring)."""
from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import Counter, Gauge, Histogram

from crm_common import clock

from .bot.domain import OUTCOMES
from .sla.clocks import TARGETS

TICKETS = Gauge("crm_service_desk_tickets", "Active tickets (new, open, pending) by status and priority",
                ["status", "priority"])
BREACHED_ACTIVE = Gauge("crm_service_desk_tickets_breached", "Active tickets that have missed an SLA target")
SLA_ALERTS = Counter("crm_service_desk_sla_alerts_total", "SLA warnings and breaches published, by target and kind",
                     ["target", "kind"])
SLA_ALERT_LATENESS = Histogram("crm_service_desk_sla_alert_lateness_seconds",
                               "How long after its due instant an SLA warning or breach was published",
                               ["kind"], buckets=(.1, .25, .5, 1, 2, 5, 10, 30, 60, 300))
FIRST_RESPONSE = Histogram("crm_service_desk_first_response_seconds",
                           "Time to first response in business seconds of the ticket's calendar, by priority",
                           ["priority"], buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200))
BOT_REPLIES = Counter("crm_service_desk_bot_replies_total", "What the bot did with a message: answered from an "
                      "article, handed over (unsure, or asked for a person), or added it to the ticket",
                      ["outcome"])
CSAT = Counter("crm_service_desk_csat_total", "Satisfaction answers by score", ["score"])

_KINDS = {"ticket_sla_warning": "warning", "ticket_sla_breached": "breach"}

# Every series the dashboards and alerts read exists from the start, at 0: a breach alert
# (increase over 15 m) then sees the first breach, and no panel waits for one to appear.
for _target in TARGETS:
    for _kind in _KINDS.values():
        SLA_ALERTS.labels(_target, _kind)
for _kind in _KINDS.values():
    SLA_ALERT_LATENESS.labels(_kind)
for _outcome in OUTCOMES:
    BOT_REPLIES.labels(_outcome)
for _score in range(1, 6):
    CSAT.labels(str(_score))


def observe_events(events: Iterable[Any], ticket: dict[str, Any]) -> None:
    """Count what a ticket write announced (in the process that wrote it: once)."""
    now = clock.now()
    for event in events:
        kind = _KINDS.get(event.type)
        if kind:
            SLA_ALERTS.labels(event.target, kind).inc()
            SLA_ALERT_LATENESS.labels(kind).observe(max((now - event.due_at).total_seconds(), 0.0))
        elif event.type == "ticket_replied" and event.first_response:
            elapsed = ((ticket.get("sla") or {}).get("clocks") or {}).get("first_response", {}).get("elapsed")
            if elapsed is not None:
                FIRST_RESPONSE.labels(ticket.get("priority") or "normal").observe(float(elapsed))
        elif event.type == "csat_received":
            CSAT.labels(str(event.score)).inc()
