"""Personalization: campaign templates rendered by Jinja2's SandboxedEnvironment (a
template cannot reach Python internals, import anything or call unsafe methods), with
defaults for every value a contact may not have.

Variables: ``given_name``, ``family_name``, ``display_name``, ``first_name`` (the given
name, else the display name), ``email``, ``phone``, ``city``, ``country``, ``tier``,
``points``, ``campaign``, ``unsubscribe_url``. A missing value renders as the campaign's
default for it (``defaults``), else as "" (``{{ given_name | default("friend") }}`` works
too). Email bodies: HTML is autoescaped; every email carries an unsubscribe link (added
as a footer when the template does not place ``unsubscribe_url`` itself); links are
rewritten to signed tracking links and an open pixel is added (engagement.tokens).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from jinja2 import TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from crm_common.errors import InvalidArgument

MAX_RENDERED = 200_000
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.I)
_URL = re.compile(r"https?://[^\s<>\"']+")


class _Blank(Undefined):
    """A missing value renders as "" (never an error, never the word 'None')."""

    def __str__(self) -> str:
        return ""


_TEXT = SandboxedEnvironment(undefined=_Blank, autoescape=False, keep_trailing_newline=True)
_HTML = SandboxedEnvironment(undefined=_Blank, autoescape=True, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def _compiled(source: str, is_html: bool):
    return (_HTML if is_html else _TEXT).from_string(source)


def check(source: str, field: str, *, is_html: bool = False) -> None:
    """InvalidArgument naming ``field`` (and the line) when ``source`` is not a template."""
    try:
        _compiled(source, is_html)
    except TemplateSyntaxError as exc:
        raise InvalidArgument.field(field, f"template error on line {exc.lineno}: {exc.message}") from None


def render(source: str, variables: dict[str, Any], *, is_html: bool = False, field: str = "template") -> str:
    try:
        text = _compiled(source, is_html).render(variables)
    except SecurityError as exc:
        raise InvalidArgument.field(field, f"the template does something a template may not: {exc}") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidArgument.field(field, f"the template failed: {exc}") from None
    if len(text) > MAX_RENDERED:
        raise InvalidArgument.field(field, f"renders to more than {MAX_RENDERED} characters")
    return text


def variables(state: dict[str, Any], defaults: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    """What a template sees of one contact (audience.state) and its campaign."""
    contact = state.get("contact") or {}
    loyalty = state.get("loyalty") or {}
    given = contact.get("given_name") or ""
    out = {"given_name": given, "family_name": contact.get("family_name") or "",
           "display_name": contact.get("display_name") or "",
           "first_name": given or contact.get("display_name") or "",
           "email": contact.get("email") or "", "phone": contact.get("phone") or "",
           "city": contact.get("city") or "", "country": contact.get("country") or "",
           "tier": loyalty.get("tier") or "", "points": loyalty.get("balance") if loyalty.get("member") else ""}
    for key, value in defaults.items():
        if out.get(key) in (None, ""):
            out[key] = value
    return {**out, **extra}


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str | None
    links: list[str]


def email(content: dict[str, Any], values: dict[str, Any], *, unsubscribe_url: str,
          track: Callable[[str], str] | None = None, pixel_url: str | None = None) -> Email:
    """The personalized email: subject, text part, HTML part (if the campaign has one),
    with the unsubscribe link guaranteed, links tracked and an open pixel."""
    values = {**values, "unsubscribe_url": unsubscribe_url}
    subject = " ".join(render(content["subject"], values, field="email.subject").split())
    text = render(content["body_text"], values, field="email.body_text")
    if unsubscribe_url not in text:
        text = text.rstrip("\n") + f"\n\n--\nUnsubscribe: {unsubscribe_url}\n"
    body_html = None
    links: list[str] = []
    if content.get("body_html"):
        body_html = render(content["body_html"], values, is_html=True, field="email.body_html")
        if html.escape(unsubscribe_url) not in body_html and unsubscribe_url not in body_html:
            footer = f'<p style="font-size:small"><a href="{html.escape(unsubscribe_url)}">Unsubscribe</a></p>'
            body_html = body_html.replace("</body>", footer + "</body>") if "</body>" in body_html else body_html + footer
    if track is not None:
        text, found = _track_text(text, unsubscribe_url, track)
        links += found
        if body_html is not None:
            body_html, found = _track_html(body_html, unsubscribe_url, track)
            links += [link for link in found if link not in links]
    if body_html is not None and pixel_url:
        pixel = f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" style="display:none">'
        body_html = body_html.replace("</body>", pixel + "</body>") if "</body>" in body_html else body_html + pixel
    return Email(subject, text, body_html, links)


def _track_text(text: str, keep: str, track: Callable[[str], str]) -> tuple[str, list[str]]:
    found: list[str] = []

    def swap(m: re.Match) -> str:
        url = m.group(0).rstrip(".,;:!?)")
        tail = m.group(0)[len(url):]
        if url == keep:
            return m.group(0)
        found.append(url)
        return track(url) + tail
    return _URL.sub(swap, text), found


def _track_html(body: str, keep: str, track: Callable[[str], str]) -> tuple[str, list[str]]:
    found: list[str] = []

    def swap(m: re.Match) -> str:
        url = html.unescape(m.group(3))
        if url == keep:
            return m.group(0)
        found.append(url)
        return f"{m.group(1)}{m.group(2)}{html.escape(track(url))}{m.group(2)}"
    return _HREF.sub(swap, body), found


def sms(content: dict[str, Any], values: dict[str, Any], *, unsubscribe_url: str) -> str:
    return " ".join(render(content["text"], {**values, "unsubscribe_url": unsubscribe_url}, field="sms.text").split())
