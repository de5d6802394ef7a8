"""API models of settlement."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field


class SettlementSummaryRead(BaseModel):
    """One pool's settled day: identity, baseline method and totals (aFRR, congestion, day-ahead, sessions)."""

    run_id: str
    pool: str
    day: str
    status: str
    computed_at: str
    baseline_method: str
    summary: dict[str, Any]


class SettlementRunWrite(BaseModel):
    """Prices of a (re)computation; absent values take the defaults."""

    pool: str | None = None
    afrr_energy_price_eur_per_mwh: float = 100.0
    afrr_penalty_eur_per_mwh: float = 200.0
    imbalance_price_eur_per_mwh: float | list[float] = 100.0
    flex_penalty_eur_per_mw: float = 0.0


class CounterpartyIspWrite(BaseModel):
    """The DSO's settled figures of one ISP (kW)."""

    isp: int = Field(ge=1, le=100)
    baseline_kw: float
    ordered_kw: float
    actual_kw: float
    delivered_kw: float
    deficiency_kw: float


class CounterpartySettlementWrite(BaseModel):
    """A DSO's FlexSettlement of one of our orders."""

    dso_domain: str
    congestion_point: str
    period: date
    price_eur: Decimal
    penalty_eur: Decimal
    net_eur: Decimal
    isps: list[CounterpartyIspWrite]


class CounterpartyVerdictRead(BaseModel):
    """Our answer: accepted, or disputed with the reason and the ISPs that differ."""

    order_reference: str
    accepted: bool
    reason: str
    differing_isps: list[int]
