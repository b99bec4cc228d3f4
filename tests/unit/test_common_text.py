"""crm_common.text.fold: the one search folding (contacts' names, the knowledge base)."""
from __future__ import annotations

import pytest

from crm_common.text import fold


@pytest.mark.parametrize("typed, written", [
    ("علي", "علی"), ("على", "علی"), ("كتاب", "کتاب"), ("مدرسة", "مدرسه"),        # Arabic letters -> Persian keyboard's
    ("أحمد", "احمد"), ("إسلام", "اسلام"), ("آب", "اب"), ("ٱلله", "الله"),         # alef variants
    ("مسؤول", "مسوول"), ("بئر", "بیر"),                                          # hamza seats
    ("مُحَمَّد", "محمد"), ("كِتَابٌ", "کتاب"),                                       # harakat, tanwin, shadda
    ("سلامـــ", "سلام"),                                                         # tatweel
    ("۱۲۳٤٥", "12345"),                                                          # Persian and Arabic-Indic digits
    ("Müller", "muller"), ("ÉCOLE", "ecole"), ("Straße", "strasse"),             # Latin accents, case
    ("ＡＢＣ", "abc"), ("ﻻ", "لا"),                                               # compatibility forms
])
def test_variants_fold_to_one_form(typed, written):
    assert fold(typed) == fold(written) == written


def test_invisible_characters():
    assert fold("می\u200cخواهم") == "می خواهم"              # ZWNJ is a word break
    assert fold("\u200fسلام\u200e  دنیا ") == "سلام دنیا"    # bidi marks go, spaces collapse
    assert fold("") == "" and fold(None) == ""


def test_marks_that_carry_meaning_stay():
    assert fold("がっこう") == "がっこう" and fold("が") != fold("か")
    assert fold("한국어") == "한국어" and fold("हिन्दी") == "हिन्दी"
