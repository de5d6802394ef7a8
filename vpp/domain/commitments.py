"""The kinds of obligation a pool can carry for an ISP, and how they combine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class CommitmentKind(StrEnum):
    """What obliges the pool.

    ``day_ahead_schedule``: cleared day-ahead power (kW, the pool's schedule);
    ``afrr_capacity_up`` / ``afrr_capacity_down``: reserved aFRR capacity (kW, magnitude);
    ``congestion_limit``: the pool's consumption must stay at or below ``power_kw``;
    ``flex_order``: ordered reduction below the D-prognosis (kW, magnitude);
    ``device_curtailment``: each device of the pool is capped at ``power_kw`` (§14a, at least 4.2 kW).
    """

    DAY_AHEAD_SCHEDULE = "day_ahead_schedule"
    AFRR_CAPACITY_UP = "afrr_capacity_up"
    AFRR_CAPACITY_DOWN = "afrr_capacity_down"
    CONGESTION_LIMIT = "congestion_limit"
    FLEX_ORDER = "flex_order"
    DEVICE_CURTAILMENT = "device_curtailment"


@dataclass(frozen=True, slots=True)
class CommitmentValue:
    """One obligation of one pool for one ISP."""

    pool: str
    isp_start: datetime
    kind: CommitmentKind
    power_kw: float
    source: str
    reference: str
    price_eur_per_mwh: float | None = None
