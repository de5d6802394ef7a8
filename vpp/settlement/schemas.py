"""API models of settlement."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import Integer, IsoDate, Money, Number, Pool, Text


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

    model_config = ConfigDict(extra="forbid")

    pool: Pool | None = None
    afrr_energy_price_eur_per_mwh: Number = 100.0
    afrr_penalty_eur_per_mwh: Number = 200.0
    imbalance_price_eur_per_mwh: Number | list[Number] = 100.0
    flex_penalty_eur_per_mw: Number = 0.0


class CounterpartyIspWrite(BaseModel):
    """The DSO's settled figures of one ISP (kW)."""

    model_config = ConfigDict(extra="forbid")

    isp: Integer = Field(ge=1, le=100)
    baseline_kw: Number
    ordered_kw: Number
    actual_kw: Number
    delivered_kw: Number
    deficiency_kw: Number


class CounterpartySettlementWrite(BaseModel):
    """A DSO's FlexSettlement of one of our orders."""

    model_config = ConfigDict(extra="forbid")

    dso_domain: Text
    congestion_point: Text
    period: IsoDate
    price_eur: Money
    penalty_eur: Money
    net_eur: Money
    isps: list[CounterpartyIspWrite] = Field(max_length=100)


class CounterpartyVerdictRead(BaseModel):
    """Our answer: accepted, or disputed with the reason and the ISPs that differ."""

    order_reference: str
    accepted: bool
    reason: str
    differing_isps: list[int]
