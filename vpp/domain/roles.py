"""Who may call what: the roles an API key carries."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The role of an API key; admin may call everything, the others only their own routes."""

    ADMIN = "admin"
    TRADER = "trader"
    MARKET = "market"
    DSO = "dso"
    PARTNER = "partner"  # an eMSP, driver app or car-sharing system stating charging needs and bookings
