#!/usr/bin/env python3
"""The local mail and SMS sink: a real SMTP server (aiosmtpd) and a tiny SMS provider
(HTTP), which `make up` starts for the marketing service, keeping every message it gets
under a folder where developers and tests read them.

    scripts/mail_sink.py serve [--dir var/mail] [--smtp-port 8025] [--http-port 8026]
    scripts/mail_sink.py list  [--dir var/mail] [--sms] [--json]     (make mail)
    scripts/mail_sink.py show N [--dir var/mail] [--sms]             (make mail N=3)

What it stores: ``<dir>/email/<n>.eml`` (the message as received) and ``<dir>/sms/<n>.json``,
each listed in ``index.jsonl`` beside them (sequence, time, sender, recipients, subject, the
CRM's message and campaign ids). It plays the servers' failures for tests: a recipient at
``bounce.test`` is refused for good (550), one at ``defer.test`` always deferred (451), one at
``flaky.test`` deferred the first time only; an SMS to a number starting with +999 is refused
(400), one starting with +998 answered 503 the first time. GET ``/t/...`` (the default
tracking URL) explains that a web front would record the click; GET ``/sms`` lists the SMS.
"""
from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "var" / "mail"


class Mailbox:
    """What the sink received, read from its folder (safe while it runs: entries appear
    whole, by rename)."""

    def __init__(self, folder: Path | str = DEFAULT_DIR):
        self.folder = Path(folder)

    def _index(self, kind: str) -> list[dict[str, Any]]:
        path = self.folder / kind / "index.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def emails(self) -> list[dict[str, Any]]:
        """Every email: its index entry plus ``message`` (an email.message.EmailMessage)."""
        out = []
        for entry in self._index("email"):
            raw = (self.folder / "email" / f"{entry['n']:06d}.eml").read_bytes()
            out.append({**entry, "message": email.message_from_bytes(raw, policy=email.policy.default)})
        return out

    def sms(self) -> list[dict[str, Any]]:
        return self._index("sms")

    @staticmethod
    def text(message) -> str:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @staticmethod
    def html(message) -> str:
        part = message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


class Store:
    """Writes entries one at a time (the SMTP loop and the HTTP threads share it)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        for kind in ("email", "sms"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            index = folder / kind / "index.jsonl"
            self.counts[kind] = sum(1 for _ in index.open()) if index.exists() else 0

    def add(self, kind: str, body: bytes, suffix: str, meta: dict[str, Any]) -> int:
        with self.lock:
            index = self.folder / kind / "index.jsonl"
            n = self.counts[kind] = self.counts[kind] + 1
            target = self.folder / kind / f"{n:06d}{suffix}"
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(body)
            os.replace(tmp, target)
            with index.open("a") as f:
                f.write(json.dumps({"n": n, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}) + "\n")
            return n


class SmtpHandler:
    def __init__(self, store: Store, delay: float = 0.0):
        self.store = store
        self.delay = delay
        self.seen: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        domain = address.rpartition("@")[2].lower()
        if domain == "bounce.test":
            return "550 5.1.1 no such mailbox (the sink bounces bounce.test)"
        if domain == "defer.test" or (domain == "flaky.test" and address not in self.seen):
            self.seen.add(address)
            return "451 4.3.0 try again later (the sink defers this address)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)    # a slower server (tests spread a send over replicas)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.store.add("email", envelope.content, ".eml", {
            "from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": str(message.get("Subject", "")),
            "message_id": str(message.get("X-CRM-Message-Id", "")),
            "campaign_id": str(message.get("X-CRM-Campaign-Id", ""))})
        return "250 Message accepted for delivery"


def http_handler(store: Store):
    failed_once: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any] | str) -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 - http.server's name
            if self.path.rstrip("/") != "/sms":
                return self._answer(404, {"error": "POST /sms"})
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                sms = json.loads(raw)
                to, text = str(sms["to"]), str(sms["text"])
            except (ValueError, KeyError, TypeError):
                return self._answer(400, {"error": "expected JSON {to, text, from, reference}"})
            if to.startswith("+999"):
                return self._answer(400, {"error": "the sink refuses numbers starting with +999"})
            if to.startswith("+998") and to not in failed_once:
                failed_once.add(to)
                return self._answer(503, {"error": "the sink is busy once for numbers starting with +998"})
            n = store.add("sms", raw, ".json", {"to": to, "from": sms.get("from", ""), "text": text,
                                                "reference": sms.get("reference", "")})
            self._answer(200, {"id": f"sms-{n}", "status": "accepted"})

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/") == "/sms":
                return self._answer(200, {"sms": Mailbox(store.folder).sms()})
            if self.path.startswith("/t/"):
                return self._answer(200, "The local sink received a tracking link. In a deployment a web front "
                                         "serves these and calls crm.v1.MarketingService/TrackEngagement with the "
                                         "token (the last path segment).\n")
            self._answer(404, {"error": "GET /sms or /t/..."})

        def log_message(self, *args):   # quiet: one line per request is noise here
            pass

    return Handler


def serve(folder: Path, host: str, smtp_port: int, http_port: int, delay: float = 0.0) -> None:
    from aiosmtpd.controller import Controller

    store = Store(folder)
    controller = Controller(SmtpHandler(store, delay), hostname=host, port=smtp_port)
    controller.start()
    httpd = ThreadingHTTPServer((host, http_port), http_handler(store))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"mail sink: SMTP {host}:{smtp_port}, SMS http://{host}:{http_port}/sms, folder {folder}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    httpd.shutdown()
    controller.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "list", "show"])
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("CRM_MAIL_DIR") or DEFAULT_DIR))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    parser.add_argument("--sms", action="store_true", help="the SMS instead of the emails")
    parser.add_argument("--delay", type=float, default=0.0, help="serve: seconds before accepting each email")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.dir, args.host, args.smtp_port, args.http_port, args.delay)
        return 0
    box = Mailbox(args.dir)
    entries = box.sms() if args.sms else box._index("email")
    if args.command == "list":
        if args.json:
            print(json.dumps(entries, indent=2))
        for e in [] if args.json else entries:
            what = e["text"][:60] if args.sms else e["subject"]
            print(f"{e['n']:>5}  {e['at']}  {', '.join(e['to']) if isinstance(e['to'], list) else e['to']:<32}  {what}")
        if not entries and not args.json:
            print(f"(nothing received yet in {args.dir})")
        return 0
    n = args.n or (entries[-1]["n"] if entries else 0)
    path = args.dir / ("sms" if args.sms else "email") / f"{n:06d}{'.json' if args.sms else '.eml'}"
    if not path.exists():
        print(f"no message {n} in {path.parent}", file=sys.stderr)
        return 1
    sys.stdout.write(path.read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
