"""Email delivery over SMTP (the standard library's smtplib; under the service's eventlet
its sockets are green, so a slow server holds one worker, not the process).

``MARKETING_SMTP_URL``: ``smtp://[user:password@]host[:port][?starttls=true]`` or
``smtps://...`` (TLS from the first byte, port 465 by default); locally the sink `make up`
starts (``smtp://127.0.0.1:8025``), in a cluster a Secret (it may carry a password).

A server's answer decides what happens to a message: a 5xx refusal is permanent
(``Permanent``: the message bounced), a 4xx, a dropped connection or a timeout is
transient (``Transient``: retried with backoff by the caller, then failed).
"""
from __future__ import annotations

import smtplib
import ssl
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from . import Permanent, Transient


def _classify(code: int | None, text: str) -> DeliveryError:
    return (Permanent if code is not None and code >= 500 else Transient)(f"{code or ''} {text}".strip())


class SmtpServer:
    def __init__(self, url: str, timeout: float = 30):
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("MARKETING_SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.starttls = (parse_qs(parts.query).get("starttls") or ["false"])[0].lower() in ("1", "true", "yes")
        self.timeout = timeout

    def connect(self) -> smtplib.SMTP:
        try:
            if self.tls:
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    conn.starttls(context=ssl.create_default_context())
            if self.user:
                conn.login(self.user, self.password)
            return conn
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, str(exc.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(f"cannot reach the mail server {self.host}:{self.port}: {exc}") from None

    @contextmanager
    def session(self) -> Iterator["Session"]:
        """One connection for many messages (reopened after a failure); closed at the end."""
        session = Session(self)
        try:
            yield session
        finally:
            session.close()


class Session:
    def __init__(self, server: SmtpServer):
        self.server = server
        self.conn: smtplib.SMTP | None = None

    def send(self, message: EmailMessage) -> None:
        if self.conn is None:
            self.conn = self.server.connect()
        try:
            refused = self.conn.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, text.decode(errors="replace") if isinstance(text, bytes) else str(text)) from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise _classify(exc.smtp_code, text) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise Transient(f"the mail server connection failed: {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, text.decode(errors="replace") if isinstance(text, bytes) else str(text))

    def _drop(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        finally:
            self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()


def build(*, sender: str, to: str, subject: str, text: str, html: str | None, message_id: str, campaign_id: str,
          unsubscribe_url: str, domain: str = "crm.local") -> EmailMessage:
    """The message as it goes out: text and (if any) HTML alternatives, a Message-ID named
    after the message, one-click unsubscribe headers (RFC 8058) and our references."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=message_id, domain=domain)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-CRM-Message-Id"] = message_id
    msg["X-CRM-Campaign-Id"] = campaign_id
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg
