"""Knowledge-base search, pure: the terms of an article and of a query, and their ranking.

Text is folded the CRM's one way (crm_common.text.fold: Arabic/Persian letter
variants, diacritics, joiners, digits, case), cut into words, stop words dropped, and
each word stemmed with the Snowball stemmer of its script (English for Latin letters,
Persian for Arabic script; snowballstemmer, pure Python): "refunds" finds "refund",
"کتاب‌ها" finds "کتاب".

An article's terms carry weights by where they occur (title 3, tags 2, body 1); the
store keeps one posting per (article, term) under an index on the term, so a query
reads the postings of its own terms only. Persian endings the stemmer keeps (possessives:
"سفارشم", my order; the ezafe: "کالای", the goods of) are tried without them too. Ranking is BM25 (k1 1.2, b 0.75) over the
weighted frequencies, computed here (the database has no text search).

The bot's confidence in its best answer is the share of the query's information
(the IDF of its terms) that the best article covers: 1.0 when it contains every term of
the question, low when the question's rarest words are not in it, 0 when none are.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import snowballstemmer

from crm_common.text import fold

TITLE_WEIGHT, TAG_WEIGHT, BODY_WEIGHT = 3.0, 2.0, 1.0
K1, B = 1.2, 0.75
TERM_MAX = 40
QUERY_TERMS_MAX = 32
_WORD = re.compile(r"\w+")
_ARABIC_SCRIPT = re.compile(r"[\u0600-\u06ff]")

STOPWORDS = frozenset(fold(w) for w in """
a an and are as at be been but by can could did do does for from had has have how i if in into is it its
me my no not of on or our please so than that the their them then there these they this to too was we
what when where which who why will with would you your yours hi hello thanks thank help want need get
از به با در که این آن را و یا برای تا هم اما اگر چه چی چرا چطور چگونه کجا کی کدام است هست بود شد شده
می نمی ها های هایی ای ی من تو او ما شما ایشان آنها اینها یک دارم داریم دارید کنم کنید کرد کردم کردن
خواهم میخواهم توانم میتوانم توان باید لطفا سلام ممنون مرسی مال رو
ده دهم دهی دهد دهیم دهید دهند بده بدهم بدهید داد دادم دادن دادید کن کنی کند کنیم کنند بکنم کردید
شد شود شوم شوید شوند میشود بشود شدن زدن زد زنم گرفتن گیرم دارد دارند هستم هستید بودم
""".split())
# ^ Persian light verbs ("تغییر دهم", change: the meaning is in the noun) are noise to a search.


@lru_cache(maxsize=2)
def _stemmer(language: str):
    return snowballstemmer.stemmer(language)


def _stem(word: str) -> str:
    if _ARABIC_SCRIPT.search(word):
        return _stemmer("persian").stemWord(word)
    if word.isascii() and word.isalpha():
        return _stemmer("english").stemWord(word)
    return word


def _raw_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(fold(text)) if w not in STOPWORDS and (len(w) >= 2 or w.isdigit())]


def words(text: str) -> list[str]:
    """The folded, stemmed words of ``text`` that carry meaning, in order."""
    return [_stem(w)[:TERM_MAX] for w in _raw_words(text)]


# Persian endings the stemmer keeps, which a query word is also tried without: possessives
# ("سفارشم", my order) and the ezafe ی ("کالای سفارشم", the goods of my order).
_ENDINGS = ("شان", "تان", "مان", "م", "ت", "ش", "ی")


def query_terms(text: str) -> list[tuple[str, ...]]:
    """The distinct terms of a query, in the order asked; each a tuple of alternatives
    (the word as stemmed, then the word stemmed without a Persian ending)."""
    out: dict[str, tuple[str, ...]] = {}
    for word in _raw_words(text):
        term = _stem(word)[:TERM_MAX]
        alternatives = [term]
        if _ARABIC_SCRIPT.search(word):
            alternatives += [_stem(word[:-len(e)])[:TERM_MAX] for e in _ENDINGS
                             if word.endswith(e) and len(word) - len(e) >= 3][:1]
        out.setdefault(term, tuple(dict.fromkeys(alternatives)))
    return list(out.values())[:QUERY_TERMS_MAX]


def all_terms(query: list[tuple[str, ...]]) -> list[str]:
    return list(dict.fromkeys(t for group in query for t in group))


def article_terms(title: str, body: str, tags: Iterable[str]) -> tuple[dict[str, float], float]:
    """``({term: weighted frequency}, weighted length)`` of an article."""
    tf: Counter[str] = Counter()
    for text, weight in ((title, TITLE_WEIGHT), (body, BODY_WEIGHT), *((t, TAG_WEIGHT) for t in tags)):
        for term in words(text):
            tf[term] += weight
    return dict(tf), float(sum(tf.values()))


def idf(df: int, n_docs: int) -> float:
    """BM25's IDF, never negative (a term in every document still counts a little)."""
    n_docs = max(n_docs, df)
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Scored:
    article_id: str
    score: float
    matched: tuple[str, ...]         # the query terms the article contains


def rank(query: list[tuple[str, ...]], postings: dict[str, dict[str, float]], lengths: dict[str, float],
         n_docs: int, avg_length: float) -> list[Scored]:
    """Articles by BM25 score, best first. ``postings[term][article_id]`` is the term's
    weighted frequency in the article, ``lengths`` the articles' weighted lengths; each
    query term counts by its best alternative in an article."""
    scores: dict[str, float] = {}
    matched: dict[str, list[str]] = {}
    avg_length = avg_length or 1.0
    for group in query:
        best: dict[str, float] = {}
        for term in group:
            docs = postings.get(term) or {}
            weight = idf(len(docs), n_docs)
            for article_id, tf in docs.items():
                norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths.get(article_id, avg_length) / avg_length))
                best[article_id] = max(best.get(article_id, 0.0), weight * norm)
        for article_id, score in best.items():
            scores[article_id] = scores.get(article_id, 0.0) + score
            matched.setdefault(article_id, []).append(group[0])
    ranked = sorted(scores, key=lambda a: (-scores[a], a))
    return [Scored(a, round(scores[a], 4), tuple(matched[a])) for a in ranked]


def confidence(query: list[tuple[str, ...]], best: Scored | None, postings: dict[str, dict[str, float]],
               n_docs: int) -> float:
    """The share of the query's IDF mass that ``best`` covers (0..1); a query term
    weighs the IDF of its most common alternative that any article has."""
    if best is None or not query:
        return 0.0
    def weight(group: tuple[str, ...]) -> float:
        known = [len(postings.get(t) or {}) for t in group if postings.get(t)]
        return idf(max(known) if known else 0, n_docs)
    weights = {group[0]: weight(group) for group in query}
    total = sum(weights.values())
    return round(sum(weights[t] for t in best.matched) / total, 3) if total else 0.0


def snippet(body: str, terms: list[str], limit: int = 240) -> str:
    """The first sentence of ``body`` that contains a query term (else its beginning)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?؟。])\s+|\n+", body) if s.strip()]
    wanted = set(terms)
    chosen = next((s for s in sentences if wanted & set(words(s))), sentences[0] if sentences else "")
    return chosen if len(chosen) <= limit else chosen[:limit - 1].rstrip() + "…"
