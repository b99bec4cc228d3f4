"""Knowledge-base RPCs: write articles, read them, search them. Mixed into
ServiceDeskService (service.py); ranking is kb.search, persistence kb.store."""
from __future__ import annotations

from typing import Any

from crm_common import audit, clock
from crm_common.errors import VersionConflict
from crm_common.ids import new_id
from crm_common.nameko.base import rpc

from ..views import article_view
from . import contracts as C, search
from .store import ARTICLES

AUDITED = ("title", "body", "tags", "locale", "status")
DEFAULT_RESULTS = 10


def article_fields(article: C.ArticleIn) -> dict[str, Any]:
    terms, length = search.article_terms(article.title, article.body, article.tags)
    return {"title": article.title, "body": article.body, "tags": list(article.tags), "locale": article.locale,
            "status": article.status, "terms": terms, "length": length}


class KbEntrypoints:
    @rpc(C.CreateArticle)
    def create_article(self, req: C.CreateArticle):
        now = clock.now()
        doc = {"_id": new_id("art"), **article_fields(req.article), "created_at": now, "updated_at": now, "version": 1}
        staged = self.outbox.audit("article", doc["_id"], "create", {}, {k: doc[k] for k in AUDITED})
        if not self.store.kb.insert(doc, staged):          # replayed under its idempotency key
            return article_view(self.store.kb.get(doc["_id"]))
        self.store.kb.sync_terms(doc, ())
        self.outbox.publish(self.store.db[ARTICLES], doc["_id"], staged)
        return article_view(doc)

    @rpc(C.UpdateArticle)
    def update_article(self, req: C.UpdateArticle):
        before = self.store.kb.get(req.article_id)
        if req.expected_version and before["version"] != req.expected_version:
            raise VersionConflict(f"article {req.article_id} is at version {before['version']}, not "
                                  f"{req.expected_version}; reload it and apply your change again",
                                  {"article_id": req.article_id, "current_version": before["version"]})
        fields = {**article_fields(req.article), "updated_at": clock.now()}
        old, new = audit.changed({k: before.get(k) for k in AUDITED}, {k: fields[k] for k in AUDITED})
        staged = self.outbox.audit("article", before["_id"], "update", old, new) if new else []
        self.store.kb.replace(before, fields, staged)
        after = {**before, **fields, "version": before["version"] + 1}
        self.store.kb.sync_terms(after, before.get("terms") or {})
        self.outbox.publish(self.store.db[ARTICLES], before["_id"], staged)
        return article_view(after)

    @rpc(C.GetArticle)
    def get_article(self, req: C.GetArticle):
        return article_view(self.store.kb.get(req.article_id))

    @rpc(C.SearchArticles)
    def search_articles(self, req: C.SearchArticles):
        hits, _ = self._search(req.query, req.locale, req.include_drafts, req.page_size or DEFAULT_RESULTS)
        return {"hits": hits}

    def _search(self, text: str, locale: str | None, include_drafts: bool, limit: int
                ) -> tuple[list[dict[str, Any]], float]:
        """Ranked hits (article, score, snippet) and the confidence in the best one."""
        query = search.query_terms(text)
        terms = search.all_terms(query)
        postings, lengths = self.store.kb.postings(terms, locale=locale, include_drafts=include_drafts)
        n_docs, avg_length = self.store.kb.corpus(include_drafts=include_drafts)
        ranked = search.rank(query, postings, lengths, n_docs, avg_length)[:limit]
        confidence = search.confidence(query, ranked[0] if ranked else None, postings, n_docs)
        articles = self.store.kb.by_ids([r.article_id for r in ranked])
        hits = [{"article": article_view(articles[r.article_id]), "score": r.score,
                 "snippet": search.snippet(articles[r.article_id]["body"], terms)}
                for r in ranked if r.article_id in articles]
        return hits, confidence
