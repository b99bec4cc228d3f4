"""The marketing service's settings (declared with their defaults in the registry, read
from the environment by crm_common.config), parsed once into typed values. A malformed
value stops the service at start-up, naming the setting."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from .audience import value
from .engagement.scoring import ScoringPolicy


@dataclass(frozen=True)
class QuietHours:
    """Local hours when no SMS is sent: ``start`` to ``end`` (end excluded), wrapping
    midnight when start > end; equal = none."""

    start: int
    end: int

    def holds(self, hour: int) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True)
class Settings:
    smtp_url: str
    email_from: str
    sms_url: str
    sms_token: str
    sms_sender: str
    tracking_url: str
    tracking_secret: str
    cap_messages: int
    cap_window: timedelta
    quiet_hours: QuietHours
    default_tz: str
    scoring: ScoringPolicy
    bands: dict[str, tuple[int, int, int, int]]
    send_retries: int
    retry_wait: float
    batch_size: int
    send_concurrency: int
    recheck: timedelta
    send_timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Settings":
        def get(name: str) -> str:
            return str(config.get(name) or "").strip()

        def number(name: str, low: float, high: float, kind=int):
            raw = get(name)
            try:
                parsed = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a number") from None
            if not low <= parsed <= high:
                raise ValueError(f"{name}={raw!r}: expected {low} to {high}")
            return parsed

        secret = get("MARKETING_TRACKING_SECRET")
        if not secret:
            # Derived from the secret every process holds, so a local stack needs no more setup;
            # a cluster sets its own (the Secret marketing-credentials).
            internal = get("CRM_INTERNAL_SECRET").encode()
            secret = hmac.new(internal, b"crm-marketing-tracking", hashlib.sha256).hexdigest() if internal else ""
        if len(secret.encode()) < 32:
            raise ValueError("MARKETING_TRACKING_SECRET must be at least 32 bytes (or CRM_INTERNAL_SECRET set)")
        quiet = get("MARKETING_QUIET_HOURS")
        try:
            start, end = (int(x) for x in quiet.split("-"))
            assert 0 <= start <= 23 and 0 <= end <= 23
        except (ValueError, AssertionError):
            raise ValueError(f"MARKETING_QUIET_HOURS={quiet!r}: expected START-END local hours such as 21-8") from None
        tz = get("MARKETING_DEFAULT_TIMEZONE") or "UTC"
        ZoneInfo(tz)  # raises for an unknown zone
        try:
            bands = value.parse_bands(get("MARKETING_MONETARY_BANDS"))
        except ValueError as exc:
            raise ValueError(f"MARKETING_MONETARY_BANDS: {exc}") from None
        return cls(
            smtp_url=get("MARKETING_SMTP_URL"), email_from=get("MARKETING_EMAIL_FROM"),
            sms_url=get("MARKETING_SMS_URL"), sms_token=get("MARKETING_SMS_TOKEN"),
            sms_sender=get("MARKETING_SMS_SENDER"),
            tracking_url=get("MARKETING_TRACKING_URL").rstrip("/"), tracking_secret=secret,
            cap_messages=number("MARKETING_FREQUENCY_CAP_MESSAGES", 0, 1000),
            cap_window=timedelta(days=number("MARKETING_FREQUENCY_CAP_DAYS", 0, 365, float)),
            quiet_hours=QuietHours(start, end), default_tz=tz,
            scoring=ScoringPolicy(threshold=number("MARKETING_LEAD_SCORE_THRESHOLD", 1, 10**6),
                                  window=timedelta(days=number("MARKETING_SCORE_WINDOW_DAYS", 1, 3650))),
            bands=bands,
            send_retries=number("MARKETING_SEND_RETRIES", 1, 10),
            retry_wait=number("MARKETING_SEND_RETRY_WAIT_SECONDS", 0, 60, float),
            batch_size=number("MARKETING_SEND_BATCH", 1, 2000),
            send_concurrency=number("MARKETING_SEND_CONCURRENCY", 1, 64),
            recheck=timedelta(minutes=number("MARKETING_RECHECK_MINUTES", 0.05, 24 * 60, float)),
            send_timeout=number("MARKETING_SEND_TIMEOUT_SECONDS", 1, 300, float),
        )


_CACHE: dict[tuple, Settings] = {}


def of(config: Mapping[str, Any]) -> Settings:
    """The settings of a service's config, parsed once per set of values (a process runs
    one service; a test process runs many, each with its own)."""
    key = tuple(sorted((k, str(v)) for k, v in config.items() if k.startswith("MARKETING_")
                       or k == "CRM_INTERNAL_SECRET"))
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 64:
            _CACHE.clear()
        found = _CACHE[key] = Settings.from_config(config)
    return found
