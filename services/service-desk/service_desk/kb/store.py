"""Knowledge-base articles and their term index.

``articles``: one document per article (``art_<ULID>``) with its weighted term
frequencies (``terms``) and length (service_desk.kb.search). ``article_terms``: one
posting per (article, term), ``_id`` = ``<article_id>|<term>``, indexed on ``term`` and
carrying the article's status and locale, so a query reads only its own terms'
postings, filtered without touching the articles. The article is the truth: a save
writes it (version-guarded), then brings its postings in step (``sync_terms``: idempotent;
the write stages ``_terms_n``, so a crash in between is repaired by the relay timer).

BM25 also needs the number of searchable articles and their average length: counted
from the articles, cached per process for a few seconds (ranking, not correctness,
depends on them).
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Iterable

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.errors import NotFound, VersionConflict

ARTICLES = "articles"
TERMS = "article_terms"
TERMS_STAGED = "_terms_n"
STATS_TTL_SECONDS = 5.0


class KbStore:
    _stats: dict[str, tuple[float, tuple[int, float]]] = {}   # per database: (taken at, (n, avg length))

    def __init__(self, db: Database):
        self.db = db
        self.articles = db[ARTICLES]
        self.terms = db[TERMS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[ARTICLES].create_index("status")
        db[ARTICLES].create_index(ev.OUTBOX_COUNT)
        db[ARTICLES].create_index(TERMS_STAGED)
        db[TERMS].create_index("term")

    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        try:
            self.articles.insert_one(ev.stage_on_insert({**doc, TERMS_STAGED: 1}, staged))
        except DuplicateKeyError:
            return False
        return True

    def get(self, article_id: str, *, published_only: bool = False) -> dict[str, Any]:
        query: dict[str, Any] = {"_id": article_id}
        if published_only:
            query["status"] = "published"
        doc = self.articles.find_one(query, {ev.OUTBOX: 0})
        if doc is None:
            raise NotFound(f"article {article_id} not found", {"article_id": article_id})
        return doc

    def replace(self, before: dict[str, Any], fields: dict[str, Any], staged: list[dict[str, Any]]) -> None:
        update = ev.stage_on_update({"$set": fields, "$inc": {"version": 1, TERMS_STAGED: 1}}, staged)
        if self.articles.update_one({"_id": before["_id"], "version": before["version"]}, update).matched_count != 1:
            raise VersionConflict(f"article {before['_id']} changed meanwhile; reload it and apply your change again",
                                  {"article_id": before["_id"]})

    def sync_terms(self, article: dict[str, Any], old_terms: Iterable[str]) -> None:
        """Postings of ``article`` as it is now (terms, status, locale); then its staged
        marker is dropped."""
        article_id, new = article["_id"], article.get("terms") or {}
        gone = sorted(set(old_terms) - set(new))
        if gone:
            self.terms.delete_many({"_id": {"$in": [f"{article_id}|{t}" for t in gone]}})
        for term, tf in new.items():
            self.terms.replace_one({"_id": f"{article_id}|{term}"},
                                   {"term": term, "article_id": article_id, "tf": tf, "status": article["status"],
                                    "locale": article["locale"], "length": article["length"]}, upsert=True)
        self.articles.update_one({"_id": article_id, TERMS_STAGED: {"$gt": 0}}, {"$set": {TERMS_STAGED: 0}})
        for drafts in (True, False):
            KbStore._stats.pop(f"{self.db.name}:{drafts}", None)

    def repair_terms(self, older_than: timedelta = timedelta(seconds=5), limit: int = 100) -> int:
        cutoff = clock.now() - older_than
        repaired = 0
        for doc in self.articles.find({TERMS_STAGED: {"$gt": 0}}).limit(limit):
            if doc["updated_at"] > cutoff:
                continue
            indexed = [d["_id"].partition("|")[2] for d in self.terms.find(
                {"_id": {"$gte": f"{doc['_id']}|", "$lt": f"{doc['_id']}|\uffff"}}, {"_id": 1})]
            self.sync_terms(doc, indexed)
            repaired += 1
        return repaired

    def postings(self, terms: list[str], *, locale: str | None, include_drafts: bool
                 ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """``({term: {article_id: tf}}, {article_id: length})`` of the searchable articles."""
        postings: dict[str, dict[str, float]] = {}
        lengths: dict[str, float] = {}
        if not terms:
            return postings, lengths
        for p in self.terms.find({"term": {"$in": terms}}):
            if (p["status"] != "published" and not include_drafts) or (locale and not _same_language(p, locale)):
                continue
            postings.setdefault(p["term"], {})[p["article_id"]] = float(p["tf"])
            lengths[p["article_id"]] = float(p["length"])
        return postings, lengths

    def corpus(self, *, include_drafts: bool) -> tuple[int, float]:
        """How many articles are searchable, and their average weighted length."""
        key = f"{self.db.name}:{include_drafts}"
        hit = KbStore._stats.get(key)
        if hit and time.monotonic() - hit[0] < STATS_TTL_SECONDS:
            return hit[1]
        query = {} if include_drafts else {"status": "published"}
        lengths = [float(d.get("length") or 0) for d in self.articles.find(query, {"length": 1})]
        stats = (len(lengths), sum(lengths) / len(lengths) if lengths else 0.0)
        KbStore._stats[key] = (time.monotonic(), stats)
        return stats

    def by_ids(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.articles.find({"_id": {"$in": ids}}, {ev.OUTBOX: 0, "terms": 0})}


def _same_language(posting: dict[str, Any], locale: str) -> bool:
    """``fa`` finds fa and fa-IR articles; ``fa-IR`` finds those too (the language counts)."""
    return posting.get("locale", "").split("-")[0].lower() == locale.split("-")[0].lower()


