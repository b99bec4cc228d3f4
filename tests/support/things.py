"""A throwaway event for the shared-library tests' producers."""
from __future__ import annotations

from typing import ClassVar

from crm_common.events import Event


class ThingMade(Event):
    """A test thing was made."""

    type: ClassVar[str] = "thing_made"
    subject_type: ClassVar[str] = "thing"
    id: str

    def subject(self) -> str:
        return self.id
