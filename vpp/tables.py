"""Imports every feature's tables so that ``metadata`` is complete (for Alembic and test set-up)."""

from __future__ import annotations

import vpp.activations.tables
import vpp.apikeys.tables
import vpp.audit.tables
import vpp.bids.tables
import vpp.cdrs.tables
import vpp.commitments.tables
import vpp.congestion.tables
import vpp.jobs.tables
import vpp.locations.tables
import vpp.ocpi.tables
import vpp.portfolio.tables
import vpp.sessions.tables
import vpp.settlement.tables
from vpp.db import Base

__all__ = ["metadata"]

_FEATURE_TABLES = (
    vpp.activations.tables, vpp.apikeys.tables, vpp.audit.tables, vpp.commitments.tables, vpp.jobs.tables,
    vpp.ocpi.tables, vpp.sessions.tables, vpp.locations.tables, vpp.cdrs.tables,
    vpp.congestion.tables, vpp.bids.tables, vpp.portfolio.tables, vpp.settlement.tables,
)

metadata = Base.metadata
