"""Text folded for search, the same way wherever the CRM searches (contacts by name,
the service desk's knowledge base): what a person types finds what another person
wrote, whatever keyboard, script variant or digits either of them used.

:func:`fold` applies, in order:

* NFKC (compatibility forms: full-width Latin, Arabic presentation forms, ligatures);
* Arabic letter variants to the Persian forms a Persian keyboard types: ي/ى → ی,
  ك → ک, ة → ه; alef with hamza or madda (أ إ آ ٱ) → ا, ؤ → و, ئ → ی;
* diacritics dropped: Arabic harakat, tanwin, shadda, sukun, superscript alef, Quranic
  marks; Latin combining accents (é → e, ü → u). Other scripts' combining marks (Japanese
  dakuten, Indic vowel signs) carry meaning and stay;
* tatweel (kashida) removed; ZWNJ and other invisible joiners become a word break
  (``می‌خواهم`` is two words, as a Persian reader sees it); bidi marks removed;
* Persian ``۰-۹`` and Arabic-Indic ``٠-٩`` digits to ASCII
  (crm_common.contact_points.fold_digits);
* case folded, whitespace collapsed.
"""
from __future__ import annotations

import re
import unicodedata

from .contact_points import DIGITS

# One table for str.translate: letter variants, invisible characters, digits.
_FOLD = {
    **DIGITS,
    0x064A: "\u06cc", 0x0649: "\u06cc", 0x0626: "\u06cc",   # ي ى ئ -> ی
    0x0643: "\u06a9",                                       # ك -> ک
    0x0629: "\u0647",                                       # ة -> ه
    0x0623: "\u0627", 0x0625: "\u0627", 0x0622: "\u0627", 0x0671: "\u0627",   # أ إ آ ٱ -> ا
    0x0624: "\u0648",                                       # ؤ -> و
    0x0640: "",                                             # tatweel
    0x200C: " ", 0x200D: " ", 0x2060: " ", 0xFEFF: " ",     # ZWNJ, ZWJ, word joiner, BOM: a word break
    **{cp: "" for cp in (0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},  # bidi
}
# Combining marks that are diacritics to drop (NFD exposes the accents of precomposed Latin letters).
_DIACRITICS = re.compile("[\u0300-\u036f\u064b-\u065f\u0670\u06d6-\u06ed]")


def fold(text: str) -> str:
    """``text`` folded for search (see the module docstring); "" for "" or None."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    if not text.isascii():
        text = unicodedata.normalize("NFC", _DIACRITICS.sub("", unicodedata.normalize("NFD", text)))
        text = text.translate(_FOLD)   # NFD split some variants (آ = ا + madda): fold what is left
    return " ".join(text.casefold().split())
