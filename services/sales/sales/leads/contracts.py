"""What the leads RPCs accept (crm.v1.SalesService in proto/crm/v1/sales.proto: the same
fields by name). Emails and phones are normalized as contacts does (crm_common
.contact_points), so a lead and a contact with the same address match."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from crm_common.contracts import Command, Id, OptText, Page, Request, Text, Tolerant, error
from crm_common.money import Money
from crm_common.timeline import Kind

from ..common import OptCountry, OptDay, OptDomain, OptEmail, OptOwner, OptPhone, Slug

CHANNELS = ("web_form", "email", "phone", "chat", "social", "event", "referral", "import", "marketing")
STATUSES = ("new", "working", "qualified", "disqualified", "converted")
OPEN_STATUSES = ("new", "working", "qualified")
DISQUALIFY_REASONS = ("no_budget", "no_need", "no_authority", "bad_timing", "competitor", "unreachable",
                      "duplicate", "spam", "other")
ATTRIBUTES = ("country", "region", "industry", "company_size", "job_title", "channel", "source", "medium",
              "campaign", "has_email", "has_phone", "has_company")
MATCHES = ("equals", "any_of", "contains_any", "at_least", "at_most", "present")
MAX_RULES = 100
MAX_GRADES = 10
NOTES_MAX = 4000

Channel = Literal["web_form", "email", "phone", "chat", "social", "event", "referral", "import", "marketing"]
Status = Literal["new", "working", "qualified", "disqualified", "converted"]
DisqualifyReason = Literal["no_budget", "no_need", "no_authority", "bad_timing", "competitor", "unreachable",
                           "duplicate", "spam", "other"]
Attribute = Literal["country", "region", "industry", "company_size", "job_title", "channel", "source", "medium",
                    "campaign", "has_email", "has_phone", "has_company"]
Match = Literal["equals", "any_of", "contains_any", "at_least", "at_most", "present"]

#: UpdateLead's update_mask may name these.
UPDATABLE_FIELDS = ("given_name", "family_name", "email", "phone", "job_title", "company_name", "company_size",
                    "industry", "website", "country", "region", "notes")


def _none_if_empty(value: Any) -> Any:
    return None if value in ("", 0, None) and not isinstance(value, bool) else value


class Attribution(Tolerant):
    """UTM-style campaign attribution of a capture."""

    source: OptText(100) = None
    medium: OptText(100) = None
    campaign: OptText(200) = None
    term: OptText(200) = None
    content: OptText(200) = None


class LeadIn(Tolerant):
    """The writable fields of a lead (output-only fields of crm.v1.Lead are ignored)."""

    given_name: OptText(200) = None
    family_name: OptText(200) = None
    email: OptEmail = None
    phone: OptPhone = None
    job_title: OptText(200) = None
    company_name: OptText(200) = None
    company_size: int = Field(0, ge=0, le=10_000_000)    # employees; 0 = unknown
    industry: OptText(100) = None
    website: OptDomain = None
    country: OptCountry = None
    region: OptText(100) = None
    notes: OptText(NOTES_MAX) = None


class CaptureLead(Command):
    """A lead from any channel. A person with an open lead already (same email or phone)
    is merged into it. ``owner`` assigns by hand; empty: by the assignment rules."""

    lead: LeadIn
    channel: Channel
    attribution: Attribution | None = None
    owner: OptOwner = None
    contact_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None

    @field_validator("lead")
    @classmethod
    def _reachable(cls, lead: LeadIn) -> LeadIn:
        if not (lead.email or lead.phone):
            raise error("reachable", "needs an email or a phone number (lead.email or lead.phone)")
        return lead


class GetLead(Request):
    lead_id: Id


class ListLeads(Request, Page):
    status: Annotated[Status | None, BeforeValidator(_none_if_empty)] = None
    owner: OptOwner = None
    grade: OptText(10) = None


class UpdateLead(Command):
    """Changes the fields named by ``update_mask`` (others are ignored) of the lead at
    ``expected_version``."""

    lead_id: Id
    lead: dict[str, Any]
    update_mask: Annotated[list[Literal["given_name", "family_name", "email", "phone", "job_title", "company_name",
                                        "company_size", "industry", "website", "country", "region", "notes"]],
                           Field(min_length=1, max_length=len(UPDATABLE_FIELDS))]
    expected_version: int = Field(ge=1)


class AssignLead(Command):
    """``owner`` takes the lead (an active salesperson); empty: the assignment rules decide again."""

    lead_id: Id
    owner: OptOwner = None


class QualifyLead(Command):
    lead_id: Id


class DisqualifyLead(Command):
    lead_id: Id
    reason: DisqualifyReason
    note: OptText(1000) = None


class ReopenLead(Command):
    """A disqualified lead goes back to work (its email and phone must still be free)."""

    lead_id: Id


class DealDraft(Tolerant):
    """The deal a conversion opens: the default pipeline's first stage unless told."""

    name: OptText(200) = None
    amount: Money | None = None
    pipeline_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None
    stage_id: Annotated[Slug | None, BeforeValidator(_none_if_empty)] = None
    expected_close_date: OptDay = None


class ConvertLead(Command):
    """Turns a qualified lead into a contact (or links the existing one with its email or
    phone), a company (``company_id``, else the one with the lead's website as its domain,
    else a new one when the lead names a company) and, with ``create_deal``, a deal. Safe
    to retry: converting again returns the same ids."""

    lead_id: Id
    create_deal: bool = False
    deal: DealDraft | None = None
    # an existing company to attach the contact (and deal) to, instead of the lead's own
    company_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None


class TrackLeadActivity(Command):
    """A behavioural fact about a lead (a web visit, a form filled ...), from the website
    or another system: the lead is found by id or by email; its score is recomputed."""

    lead_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None
    email: OptEmail = None
    kind: Kind
    detail: OptText(500) = None

    @model_validator(mode="after")
    def _which(self) -> "TrackLeadActivity":
        if not (self.lead_id or self.email):
            raise error("which_lead", "name the lead: lead_id or email")
        return self


# -- scoring rules ------------------------------------------------------------------------

class ScoringRule(Tolerant):
    """Either demographic (``attribute`` + ``match``) or behavioural (``fact``: points per
    fact of that kind, at most ``max_points`` in all; 0 = no cap)."""

    id: Slug
    description: OptText(200) = None
    attribute: Annotated[Attribute | None, BeforeValidator(_none_if_empty)] = None
    match: Annotated[Match | None, BeforeValidator(_none_if_empty)] = None
    values: Annotated[list[Text(100, required=True)], Field(max_length=100)] = []
    number: int = Field(0, ge=0, le=10_000_000)
    fact: Annotated[Kind | None, BeforeValidator(_none_if_empty)] = None
    points: int = Field(ge=-100, le=100)
    max_points: int = Field(0, ge=0, le=1000)

    @model_validator(mode="after")
    def _coherent(self) -> "ScoringRule":
        if bool(self.attribute) == bool(self.fact):
            raise error("rule", "a rule has either an attribute (demographic) or a fact (behavioural)")
        if self.attribute and not self.match:
            raise error("rule", "a demographic rule needs match: " + ", ".join(MATCHES))
        if self.match in ("equals", "any_of", "contains_any") and not self.values:
            raise error("rule", f"match {self.match} needs values")
        return self


class Grade(Tolerant):
    grade: Text(10, required=True)
    min_score: int = Field(ge=-10_000, le=10_000)


class GetScoringRules(Request):
    pass


class SetScoringRules(Command):
    """Replaces the rules; every open lead is scored again with them (within a minute)."""

    rules: Annotated[list[ScoringRule], Field(max_length=MAX_RULES)]
    grades: Annotated[list[Grade], Field(min_length=1, max_length=MAX_GRADES)]

    @model_validator(mode="after")
    def _distinct(self) -> "SetScoringRules":
        if len({r.id for r in self.rules}) != len(self.rules):
            raise error("rules", "rule ids must be distinct")
        if len({g.grade for g in self.grades}) != len(self.grades):
            raise error("grades", "grades must be distinct")
        return self
