"""The service desk's settings (declared with their defaults in the registry entry,
each read from the environment variable of the same name)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

from crm_common import config

from .sla import policies

SERVICE = "service-desk"
# A timer's interval is fixed when the class is defined, so it is read at import.
SLA_INTERVAL_SECONDS = float(config.setting(SERVICE, "SERVICE_DESK_SLA_INTERVAL_SECONDS"))


@dataclass(frozen=True)
class Settings:
    reopen_window: timedelta
    warning_percent: int
    escalation_group: str
    default_group: str
    max_open_per_agent: int
    value_bands: dict[str, tuple[int, int]]
    bot_confidence: float

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> "Settings":
        get = lambda key: str(cfg.get(key) or config.setting(SERVICE, key))  # noqa: E731
        return cls(reopen_window=timedelta(days=float(get("SERVICE_DESK_REOPEN_DAYS"))),
                   warning_percent=int(get("SERVICE_DESK_SLA_WARNING_PERCENT")),
                   escalation_group=get("SERVICE_DESK_ESCALATION_GROUP"),
                   default_group=get("SERVICE_DESK_DEFAULT_GROUP"),
                   max_open_per_agent=int(get("SERVICE_DESK_MAX_OPEN_PER_AGENT")),
                   value_bands=policies.parse_bands(get("SERVICE_DESK_VALUE_BANDS")),
                   bot_confidence=float(get("SERVICE_DESK_BOT_CONFIDENCE")))
