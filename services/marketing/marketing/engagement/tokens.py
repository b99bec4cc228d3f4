"""Tracking references that cannot be forged or guessed: each link of a message (its open
pixel, every tracked link, its unsubscribe link) carries a JWT (HS256) signed with the
marketing secret (MARKETING_TRACKING_SECRET; derived from CRM_INTERNAL_SECRET when unset),
naming the message and what the link does. A click token also carries the link's target,
so a tracked link can only ever redirect where the message pointed (no open redirect).

The public door is the gateway (``crm.v1.MarketingService/TrackEngagement``): the web
front that serves ``<MARKETING_TRACKING_URL>/{o,c,u}/<token>`` calls it with the token
and redirects to ``redirect_url``. A token that does not verify is INVALID_ARGUMENT, a
valid token of a message that no longer exists NOT_FOUND.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jwt

from crm_common.errors import InvalidArgument

ISSUER = "crm-marketing"
MAX_TOKEN = 4096
KINDS = {"o": "open", "c": "click", "u": "unsubscribe"}
Kind = Literal["open", "click", "unsubscribe"]


@dataclass(frozen=True)
class Tracked:
    kind: Kind
    message_id: str
    link: str | None = None


def mint(secret: str, kind: str, message_id: str, link: str | None = None) -> str:
    claims = {"iss": ISSUER, "k": kind, "m": message_id}
    if link is not None:
        claims["u"] = link
    return jwt.encode(claims, secret, algorithm="HS256")


def url(base: str, secret: str, kind: str, message_id: str, link: str | None = None) -> str:
    return f"{base}/{kind}/{mint(secret, kind, message_id, link)}"


def verify(secret: str, token: str) -> Tracked:
    bad = InvalidArgument.field("token", "is not a tracking token of this CRM")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise bad
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["iss", "k", "m"]})
    except jwt.PyJWTError:
        raise bad from None
    kind, message_id, link = claims.get("k"), claims.get("m"), claims.get("u")
    if kind not in KINDS or not isinstance(message_id, str) or (kind == "c") != isinstance(link, str):
        raise bad
    return Tracked(KINDS[kind], message_id, link)
