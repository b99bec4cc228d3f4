"""What the knowledge-base RPCs accept."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from crm_common.contracts import Command, Id, OptText, Paragraphs, Request, Text, Tolerant, error

TITLE_MAX = 200
BODY_MAX = 50_000
QUERY_MAX = 500
SEARCH_MAX = 50
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise error("locale", "must be a language tag such as fa, en or fa-IR")
    return value


Locale = Annotated[Text(16, required=True), AfterValidator(_locale)]
OptLocale = Annotated[OptText(16), AfterValidator(lambda v: None if v is None else _locale(v))]


class ArticleIn(Tolerant):
    """An article: ``status`` draft (agents only) or published (the bot answers with it)."""

    title: Text(TITLE_MAX, required=True)
    body: Paragraphs(BODY_MAX, required=True)
    tags: list[Text(50, required=True)] = Field(default_factory=list, max_length=20)
    locale: Locale
    status: Annotated[Literal["draft", "published"], BeforeValidator(lambda v: "draft" if v == "" else v)] = "draft"


class CreateArticle(Command):
    article: ArticleIn


class UpdateArticle(Command):
    """Replaces the article's content; ``expected_version`` (0 = any) guards against
    overwriting someone else's edit (ABORTED)."""

    article_id: Id
    article: ArticleIn
    expected_version: int = Field(0, ge=0)


class GetArticle(Request):
    article_id: Id


class SearchArticles(Request):
    """Ranked full-text search; ``locale`` "" = any; drafts only with ``include_drafts``."""

    query: Text(QUERY_MAX, required=True)
    locale: OptLocale = None
    include_drafts: bool = False
    page_size: int = Field(0, ge=0, le=SEARCH_MAX)
