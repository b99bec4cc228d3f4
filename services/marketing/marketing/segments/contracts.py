"""What the segment RPCs accept (crm.v1.MarketingService: CreateSegment ... ListSegmentMembers).
A rule is parsed here (segments.rules): a malformed rule is INVALID_ARGUMENT naming its
path before anything else happens."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from crm_common.errors import InvalidArgument
from crm_common.contracts import Command, Id, Page, Request, Text, error

from . import rules

NAME_MAX = 100
DESCRIPTION_MAX = 1000
MAX_IDS = 1000
SAMPLE_MAX = 50


def _rule(value: Any) -> dict[str, Any] | None:
    if value is None or value == {}:
        return None
    return rules.dump(rules.parse(value, "rule"))


def _empty_to_none(value):
    return None if value == "" else value




class CreateSegment(Command):
    """A static list (members added by id) or a dynamic segment (members follow the rule)."""

    name: Text(NAME_MAX, required=True)
    description: Text(DESCRIPTION_MAX) = ""
    kind: Literal["static", "dynamic"]
    rule: dict[str, Any] | None = None

    @field_validator("rule")
    @classmethod
    def _parse(cls, value):
        return _rule(value)

    @model_validator(mode="after")
    def _kind(self):
        if self.kind == "dynamic" and self.rule is None:
            raise InvalidArgument.field("rule", "a dynamic segment needs a rule")
        if self.kind == "static" and self.rule is not None:
            raise InvalidArgument.field("rule", "a static list has no rule (its members are added by id)")
        return self


class UpdateSegment(Command):
    """Replaces the fields named in ``update_mask`` (name, description, rule) if the segment
    is still at ``expected_version``; a new rule re-evaluates every contact."""

    segment_id: Id
    expected_version: int = Field(ge=1)
    name: Text(NAME_MAX) = ""
    description: Text(DESCRIPTION_MAX) = ""
    rule: dict[str, Any] | None = None
    update_mask: Annotated[list[Literal["name", "description", "rule"]], Field(min_length=1, max_length=3)]

    @field_validator("rule")
    @classmethod
    def _parse(cls, value):
        return _rule(value)

    @model_validator(mode="after")
    def _given(self):
        if "name" in self.update_mask and not self.name:
            raise InvalidArgument.field("name", "is required when update_mask names it")
        if "rule" in self.update_mask and self.rule is None:
            raise InvalidArgument.field("rule", "is required when update_mask names it")
        return self


class GetSegment(Request):
    segment_id: Id


class ListSegments(Request, Page):
    pass


class ArchiveSegment(Command):
    segment_id: Id


class PreviewSegment(Request):
    """Count and sample the contacts a rule (or an existing segment's rule) matches now."""

    segment_id: Annotated[Id | None, BeforeValidator(_empty_to_none)] = None
    rule: dict[str, Any] | None = None
    sample_size: int = Field(0, ge=0, le=SAMPLE_MAX)

    @field_validator("rule")
    @classmethod
    def _parse(cls, value):
        return _rule(value)

    @model_validator(mode="after")
    def _one(self):
        if (self.segment_id is None) == (self.rule is None):
            raise InvalidArgument.field("rule", "give either a rule or a segment_id")
        return self


class AddSegmentMembers(Command):
    """Adds contacts to a static list by id (an import); ids already in it are counted, not doubled."""

    segment_id: Id
    contact_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]


class RemoveSegmentMembers(Command):
    segment_id: Id
    contact_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]


class ListSegmentMembers(Request, Page):
    segment_id: Id
