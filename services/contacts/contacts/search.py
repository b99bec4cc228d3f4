"""Contact search: what is stored to search by, and the safe pattern a query becomes.

Names, emails and phones are folded (NFKC, case-folded, Persian/Arabic digits to ASCII,
Arabic letter variants to their Persian forms) into ``search_text``; a query is folded
the same way and escaped, so it can never be a regex or an operator.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from crm_common.contact_points import DIGITS, PHONE_NOISE, fold_digits

# Arabic letter variants folded to their Persian forms for search (ي→ی, ك→ک, ى→ی, ة→ه).
_SEARCH_FOLD = {**DIGITS, 0x064A: "\u06cc", 0x0649: "\u06cc", 0x0643: "\u06a9", 0x0629: "\u0647",
                0x200C: " ", 0x0640: ""}  # ZWNJ -> space, tatweel removed


def fold_for_search(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_SEARCH_FOLD).casefold()
    return " ".join(text.split())


def search_text(fields: dict[str, Any]) -> str:
    parts = [fields.get("display_name") or "", fields.get("given_name") or "",
             fields.get("family_name") or ""]
    parts += [e["address"] for e in fields.get("emails") or []]
    parts += [p["number"] for p in fields.get("phones") or []]
    return fold_for_search("\n".join(x for x in parts if x))


def search_pattern(text: str) -> str | None:
    """A safe regex (escaped) for the query text; None for an empty query. A phone-like
    query (digits and phone punctuation only) also matches on its bare digits, with a
    leading 00 or national 0 dropped, so ``0912 123-4567`` finds ``+989121234567``."""
    folded = fold_for_search(text or "")
    if not folded:
        return None
    alternatives = [re.escape(folded)]
    compact = "".join(ch for ch in fold_digits(text) if ch not in PHONE_NOISE)
    if re.fullmatch(r"\+?[0-9]{3,}", compact):
        if compact.startswith("+"):
            digits = compact[1:]
        elif compact.startswith("00"):
            digits = compact[2:]
        else:
            digits = compact[1:] if compact.startswith("0") else compact
        if digits and digits != folded:
            alternatives.append(re.escape(digits))
    return "|".join(alternatives)
