"""Imports every feature's tables so that ``metadata`` is complete (for Alembic and test set-up)."""

from __future__ import annotations

import vpp.apikeys.tables
import vpp.jobs.tables
from vpp.db import Base

__all__ = ["metadata"]

_FEATURE_TABLES = (vpp.apikeys.tables, vpp.jobs.tables)

metadata = Base.metadata
