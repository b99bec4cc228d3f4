"""What the sales team's RPCs accept: the directory of salespeople (reps) and the
territories that route leads to teams (crm.v1.SalesService, proto/crm/v1/sales.proto)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crm_common.contracts import Command, OptText, Page, Request, Text

from ..common import Country, OptTeam, OptTimeZone, Owner, Team

MAX_CAPACITY = 10_000
MAX_COUNTRIES = 300
MAX_REGIONS = 100
TERRITORY_NAME_MAX = 60


class UpsertSalesRep(Command):
    """Adds a salesperson to the directory or changes one (and reactivates a deactivated
    one). ``lead_capacity`` 0 means the service's default."""

    rep_id: Owner
    display_name: OptText(200) = None
    team: Team
    lead_capacity: int = Field(0, ge=0, le=MAX_CAPACITY)
    time_zone: OptTimeZone = None


class DeactivateSalesRep(Command):
    rep_id: Owner


class GetSalesRep(Request):
    rep_id: Owner


class ListSalesReps(Request, Page):
    team: OptTeam = None


class SetTerritory(Command):
    """Creates or replaces a territory: leads from ``countries`` (and, if given, one of
    ``regions``) go to ``team``; ``countries`` may be ["*"] for a catch-all. Territories
    are tried by ``rank`` (lowest first), then name."""

    name: Text(TERRITORY_NAME_MAX, required=True)
    countries: Annotated[list[Country | Annotated[str, Field(pattern=r"^\*$")]],
                         Field(min_length=1, max_length=MAX_COUNTRIES)]
    regions: Annotated[list[Text(100, required=True)], Field(max_length=MAX_REGIONS)] = []
    team: Team
    rank: int = Field(0, ge=0, le=1000)


class DeleteTerritory(Command):
    name: Text(TERRITORY_NAME_MAX, required=True)


class ListTerritories(Request):
    pass
