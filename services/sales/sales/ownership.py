"""Who owns a sales record, and what the caller may see of them: leads, deals and
activities carry an ``owner`` (a salesperson's id) and their ``team``; the caller's scope
(crm_common.access: own / team / all) filters every query and limits whom a record may
be given to."""
from __future__ import annotations

from typing import Any

from crm_common.errors import PermissionDenied


class Ownership:
    """Mixed into SalesService."""

    def _scope(self) -> dict[str, Any]:
        access = self.caller.access
        return access.owner_filter() if access else {}

    def _by(self) -> str:
        principal = self.caller.principal
        return principal.subject if principal else ""

    def _owner_and_team(self, owner: str | None, field: str = "owner") -> tuple[str, str]:
        """The owner a new or reassigned record gets (the caller when none is named) and
        its team (the owner's in the sales team directory; the caller's own team for
        themselves). Refused when the caller's scope does not reach that owner."""
        access = self.caller.access
        me = access.principal if access else None
        if owner is None:
            owner = me.id if me is not None and me.kind == "user" else ""
        rep = self.store.team.rep(owner) if owner else None
        team = rep["team"] if rep else (me.team if me is not None and owner == me.id else "")
        if access is not None and not access.may_own(owner, team):
            reach = "yourself" if access.scope == "own" else f"your team ({me.team or 'none'})"
            raise PermissionDenied(f"{field}: you may only give records to {reach}: your scope for "
                                   f"{access.permission} is {access.scope}", {"field": field, "owner": owner})
        return owner, team
