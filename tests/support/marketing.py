"""Helpers for the marketing service's tests: the mail sink as a process of its own (a
real SMTP server on free ports), other services' facts as they publish them, and a
listener that records what marketing publishes (events and timeline facts)."""
from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from crm_common import clock
from crm_common.events import envelope
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from mail_sink import Mailbox  # noqa: E402

SEEN: list[dict[str, Any]] = []       # what the listener heard (every test's; filter by ids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sink:
    smtp_port: int
    http_port: int
    mailbox: Mailbox

    def settings(self) -> dict[str, str]:
        """The marketing settings that send through this sink."""
        return {"MARKETING_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
                "MARKETING_SMS_URL": f"http://127.0.0.1:{self.http_port}/sms",
                "MARKETING_TRACKING_URL": f"http://127.0.0.1:{self.http_port}/t"}

    def emails_to(self, address: str) -> list[dict[str, Any]]:
        return [m for m in self.mailbox.emails() if address in m["to"]]


@contextmanager
def mail_sink(folder: Path, delay: float = 0.0) -> Iterator[Sink]:
    """The sink (scripts/mail_sink.py) on free ports; ``delay``: seconds per accepted email."""
    smtp, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "mail_sink.py"), "serve", "--dir", str(folder),
                             "--smtp-port", str(smtp), "--http-port", str(http), "--delay", str(delay)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", smtp), 1), 15, retry_on=(OSError,))
        yield Sink(smtp, http, Mailbox(folder))
    finally:
        proc.terminate()
        proc.wait(10)


def new_id(prefix: str = "con") -> str:
    return f"{prefix}_t{uuid.uuid4().hex[:12]}"


def contact(cid: str, version: int = 1, *, email: bool = True, sms: bool = False, name: str = "Sara",
            address: str | None = None, phone: str | None = None, **fields) -> dict[str, Any]:
    """A contact as contacts publishes it (contact_created / contact_updated)."""
    now = clock.to_iso(clock.now())
    consents = {"email": {"granted": email, "source": "test", "at": now}, "sms": {"granted": sms, "source": "test",
                                                                                  "at": now}}
    body = {"id": cid, "version": version, "given_name": name, "family_name": "Tester",
            "display_name": f"{name} Tester", "emails": [{"address": address or f"{cid}@example.org", "primary": True}],
            "phones": [{"number": phone}] if phone else [], "tags": [], "custom_fields": {}, "consents": consents,
            "created_at": now, "updated_at": now, "erased": False}
    body.update(fields)
    return body


def fact(source: str, type_: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return envelope(type_, source=source, subject=subject, data=data)


def contact_created(c: dict[str, Any]) -> dict[str, Any]:
    return fact("contacts", "contact_created", c["id"], {"contact": c})


def consent_changed(cid: str, channel: str, granted: bool) -> dict[str, Any]:
    return fact("contacts", "consent_changed", cid, {"contact_id": cid, "channel": channel, "granted": granted,
                                                     "source": "test", "at": clock.to_iso(clock.now())})


def tier_changed(cid: str, to_tier: str, from_tier: str = "bronze") -> dict[str, Any]:
    return fact("loyalty", "tier_changed", cid, {"contact_id": cid, "from_tier": from_tier, "to_tier": to_tier,
                                                 "points_earned_12m": 6000, "changed_at": clock.to_iso(clock.now())})


def order_paid(cid: str, order_id: str, amount_minor: int = 5000, currency: str = "EUR", at=None) -> dict[str, Any]:
    total = {"amount_minor": amount_minor, "currency": currency}
    return fact("sales", "order_paid", order_id, {"order_id": order_id, "contact_id": cid,
                                                  "order": {"id": order_id, "total": total},
                                                  "total": total, "paid_at": clock.to_iso(at or clock.now())})


def order_refunded(cid: str, order_id: str, amount_minor: int = 5000) -> dict[str, Any]:
    total = {"amount_minor": amount_minor, "currency": "EUR"}
    return fact("sales", "order_refunded", order_id, {"order_id": order_id, "contact_id": cid,
                                                      "order": {"id": order_id, "total": total}, "total": total,
                                                      "reason": "test", "refunded_at": clock.to_iso(clock.now())})


def ticket_opened(cid: str, ticket_id: str) -> dict[str, Any]:
    return fact("service-desk", "ticket_opened", ticket_id, {"ticket_id": ticket_id, "contact_id": cid,
                                                             "category": "late_delivery", "priority": "normal",
                                                             "channel": "email", "opened_at": clock.to_iso(clock.now())})


def ticket_status_changed(cid: str, ticket_id: str, from_status: str, to_status: str) -> dict[str, Any]:
    return fact("service-desk", "ticket_status_changed", ticket_id, {
        "ticket_id": ticket_id, "contact_id": cid, "from_status": from_status, "to_status": to_status,
        "pending_reason": "", "by": "agent", "changed_at": clock.to_iso(clock.now())})


def csat_received(cid: str, ticket_id: str, score: int) -> dict[str, Any]:
    return fact("service-desk", "csat_received", ticket_id, {"ticket_id": ticket_id, "contact_id": cid, "score": score,
                                                             "comment": "", "received_at": clock.to_iso(clock.now())})


def heard(type_: str, **match) -> list[dict[str, Any]]:
    """Envelopes of ``type_`` the listener recorded whose data has ``match``."""
    return [e for e in SEEN if e["type"] == type_ and all(e["data"].get(k) == v for k, v in match.items())]


def listener_class():
    """A nameko service recording marketing's events and every timeline fact."""
    from nameko.events import SERVICE_POOL, event_handler

    from crm_common.nameko.entrypoints import CrmEventHandler

    def record(self, event):
        SEEN.append(event)

    methods = {"name": "marketing_listener_t"}
    for event_type in ("segment_entered", "segment_left", "message_sent", "message_failed", "message_opened",
                       "message_clicked", "message_replied", "contact_unsubscribed", "lead_qualified",
                       "campaign_started", "campaign_completed", "survey_answered"):
        methods[f"on_{event_type}"] = event_handler("marketing", event_type, handler_type=SERVICE_POOL)(
            lambda self, event: record(self, event))
    methods["on_timeline"] = CrmEventHandler.decorator("timeline", "timeline_fact", handler_type=SERVICE_POOL)(
        lambda self, event: record(self, event))
    return type("MarketingListener", (), methods)
