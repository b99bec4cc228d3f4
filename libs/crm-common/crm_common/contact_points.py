"""Contact points (emails, phone numbers, company domains) normalized the same way in every service:
contacts stores them, sales matches leads on them, marketing addresses audiences by them.

* Emails are NFC, trimmed and lower-cased (local part included: the CRM treats
  ``Sara@X`` and ``sara@x`` as the same person).
* Phones become ``+<digits>`` (E.164-like: 8-15 digits, no leading 0). Persian ``۰-۹``
  and Arabic-Indic ``٠-٩`` digits are folded to ASCII; spaces, dashes, dots,
  parentheses and bidi marks are stripped; a leading ``00`` becomes ``+``. A number
  without a country code is refused unless a default country calling code is given
  (e.g. ``98``): then a national number ``0912 ...`` drops its trunk ``0`` and becomes
  ``+98912...``.

Both raise ValueError with a reason a person can act on.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

# Persian (U+06F0..) and Arabic-Indic (U+0660..) digits -> ASCII.
DIGITS = {**{0x06F0 + i: str(i) for i in range(10)}, **{0x0660 + i: str(i) for i in range(10)}}
# What people type between phone digits, plus bidi marks that RTL editors insert.
PHONE_NOISE = frozenset(" \t\u00a0\u202f\u2009-\u2010\u2011\u2012\u2013\u2014.()/"
                        "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")

_EMAIL_LOCAL = re.compile(r"^[\w.!#$%&'*+/=?^`{|}~-]+$")
_DOMAIN_LABEL = re.compile(r"^[^\W_](?:[\w-]{0,61}[^\W_])?$")
_TLD = re.compile(r"^(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$")


def fold_digits(text: str) -> str:
    return text.translate(DIGITS)


def normalize_email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    addr = unicodedata.normalize("NFC", value).strip().lower()
    if not addr:
        raise ValueError("is required")
    if len(addr) > 254:
        raise ValueError("must be at most 254 characters")
    if addr.count("@") != 1:
        raise ValueError("is not a valid email address (expected exactly one @)")
    local, domain = addr.split("@")
    if not local or len(local) > 64 or not _EMAIL_LOCAL.match(local) \
            or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("is not a valid email address (bad part before @)")
    if not is_domain(domain):
        raise ValueError("is not a valid email address (bad domain)")
    return addr


def is_domain(host: str) -> bool:
    labels = host.split(".")
    return (len(host) <= 253 and len(labels) >= 2 and all(_DOMAIN_LABEL.match(lbl) for lbl in labels)
            and bool(_TLD.match(labels[-1])))


def normalize_domain(value: str) -> str:
    """A company's domain: lower-cased host name (``https://`` and ``www.`` tolerated)."""
    host = unicodedata.normalize("NFC", value).strip().lower()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/")[0].removeprefix("www.").rstrip(".")
    if not is_domain(host):
        raise ValueError("must be a domain name such as example.com")
    return host


def strip_phone_noise(value: str) -> str:
    raw = fold_digits(unicodedata.normalize("NFKC", value))
    return "".join(ch for ch in raw if ch not in PHONE_NOISE)


def normalize_phone(value: Any, default_country_code: str | None = None) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a string")
    raw = strip_phone_noise(value)
    if not raw:
        raise ValueError("is required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        if default_country_code and raw.isdigit() and raw.startswith("0"):
            raw = "+" + default_country_code + raw[1:]
        else:
            raise ValueError("needs the country code: start with + or 00, e.g. +98 912 123 4567")
    digits = raw[1:]
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("may contain only digits, spaces, dashes, dots and parentheses after +")
    if digits.startswith("0"):
        raise ValueError("country code cannot start with 0")
    if not 8 <= len(digits) <= 15:
        raise ValueError("must have 8 to 15 digits including the country code")
    return "+" + digits
