"""Contact search by prefix: the terms a contact is found by, and what a query asks.

Names, emails and phones are folded (crm_common.text.fold: the CRM's one search folding of
letter variants, diacritics, digits and case) and cut into *terms*; a query is folded
the same way into words. A contact matches when every query word is the beginning of
one of its terms. The store keeps one small document per (contact, term) with an index
on the term, so a query is an index range over ``^word``, never a scan, and no client
text ever becomes a pattern: words are escaped before they are anchored.

Terms of a contact:
* every word of its names (split on spaces and on ``-._'`` too, and kept whole);
* each email whole, its local part and domain, and the words of both;
* each phone's digits without ``+``, and every shorter ending of them down to 4 digits,
  so a number typed without its country code or trunk 0 (``0912 123 4567``) finds
  ``+989121234567``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable

from crm_common.contact_points import PHONE_NOISE, fold_digits
from crm_common.text import fold

_SPLIT = re.compile(r"[-._'@+]+")
MIN_PHONE_ENDING = 4
TERM_MAX = 100
QUERY_WORDS_MAX = 8

# Bump when terms() or crm_common.text.fold change what a contact is found by: the store
# re-indexes every contact once (ContactsStore.reindex_terms).
TERMS_VERSION = 2


def _words(text: str) -> set[str]:
    out = set()
    for word in fold(text).split():
        out.add(word)
        out.update(part for part in _SPLIT.split(word) if part)
    return out


def terms(fields: dict[str, Any]) -> list[str]:
    """The sorted, distinct terms a contact is found by; a term that begins another one
    is left out (whatever begins it begins the longer one too)."""
    out: set[str] = set()
    for name in ("display_name", "given_name", "family_name"):
        out |= _words(fields.get(name) or "")
    for email in fields.get("emails") or ():
        address = fold(email["address"])
        local, _, domain = address.partition("@")
        out |= {address, local, domain} | _words(local) | _words(domain)
    for phone in fields.get("phones") or ():
        digits = phone["number"].lstrip("+")
        out |= {digits[i:] for i in range(0, max(1, len(digits) - MIN_PHONE_ENDING + 1))}
    ordered = sorted({t[:TERM_MAX] for t in out if t})
    # sorted, a term that begins another is directly followed by one it begins
    return [t for i, t in enumerate(ordered) if i + 1 == len(ordered) or not ordered[i + 1].startswith(t)]


def query_words(text: str) -> list[str]:
    """What a query asks for: its folded words, or the bare digits of a phone-like query
    (a leading +, 00 or national 0 dropped). Longest first: the most selective word
    drives the index lookup."""
    compact = "".join(ch for ch in fold_digits(unicodedata.normalize("NFKC", text)) if ch not in PHONE_NOISE)
    if re.fullmatch(r"\+?[0-9]{3,}", compact):
        digits = compact[1:] if compact.startswith("+") else compact[2:] if compact.startswith("00") \
            else compact[1:] if compact.startswith("0") else compact
        return [digits] if digits else []
    words = sorted({w[:TERM_MAX] for w in fold(text).split()}, key=lambda w: (-len(w), w))
    return words[:QUERY_WORDS_MAX]


def matches(words: Iterable[str], contact_terms: Iterable[str]) -> bool:
    contact_terms = list(contact_terms)
    return all(any(t.startswith(w) for t in contact_terms) for w in words)


def prefix_pattern(word: str) -> str:
    """The anchored, escaped pattern of one word: what the store asks the index for."""
    return "^" + re.escape(word)
