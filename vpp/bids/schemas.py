"""API models of the bids feature."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import Integer, IsoDate, Number, Pool, Text, UtcDatetime


class BidBuild(BaseModel):
    """A request to build a draft for a pool and period (a delivery day, or start and end)."""

    model_config = ConfigDict(extra="forbid")

    pool: Pool = Field(examples=["zone:NL"])
    delivery_day: IsoDate | None = Field(None, description="Local delivery day (day-ahead: give this, not start/end).")
    start: UtcDatetime | None = Field(
        None, description="Period start (aFRR, congestion: give start and end, not delivery_day), UTC quarter-hour."
    )
    end: UtcDatetime | None = Field(None, description="Period end (exclusive), after start, at most 7 days later.")
    prices_eur_per_mwh: list[Number] | None = Field(
        None, description="Price forecast, one per MTU of the period; default: same-weekday forecast from history."
    )
    method: Literal["auto", "flow", "parametric", "resolve"] = Field(
        "auto",
        description="Day-ahead curve method: auto = exact and fast (parametric without a pool cap, flow with one); "
        "parametric ignores the pool cap; resolve re-solves every point (exact, slow).",
    )
    products: list[Literal["capacity", "energy"]] = Field(["capacity", "energy"], min_length=1, max_length=2,
                                                          description="aFRR products.")
    margin_eur_per_mwh: Number | None = Field(None, description="aFRR energy margin over opportunity cost.")
    capacity_margin_eur_per_mw_per_h: Number | None = Field(None, description="aFRR capacity price margin.")
    price_eur_per_mwh: Number | None = Field(None, description="Congestion offer price.")


class CurvePointIn(BaseModel):
    """One point of a day-ahead curve."""

    model_config = ConfigDict(extra="forbid")

    price_eur_per_mwh: Number
    demand_kw: Number


class MtuCurveIn(BaseModel):
    """The new curve of one MTU."""

    model_config = ConfigDict(extra="forbid")

    mtu_start: UtcDatetime
    points: list[CurvePointIn] = Field(min_length=1)


class AfrrCapacityChange(BaseModel):
    """New volume and/or prices of an aFRR capacity bid (capacity 0 removes it)."""

    model_config = ConfigDict(extra="forbid")

    bid_id: Text
    capacity_kw: Number | None = None
    capacity_price_eur_per_mw_per_h: Number | None = None
    energy_price_eur_per_mwh: Number | None = None


class AfrrEnergyChange(BaseModel):
    """New volume and/or price of an aFRR energy bid (volume 0 removes it)."""

    model_config = ConfigDict(extra="forbid")

    bid_id: Text
    volume_kw: Number | None = None
    price_eur_per_mwh: Number | None = None


class IspReductionChange(BaseModel):
    """New offered reduction of one ISP (congestion)."""

    model_config = ConfigDict(extra="forbid")

    isp_start: UtcDatetime
    reduction_kw: Number


class BidUpdate(BaseModel):
    """Adjustments to a draft: day-ahead ``mtus``, aFRR ``capacity``/``energy``, congestion ``isps``/price."""

    model_config = ConfigDict(extra="forbid")

    expected_version: Integer | None = Field(None, description="Refuse the change if the draft has moved on.")
    mtus: list[MtuCurveIn] | None = None
    capacity: list[AfrrCapacityChange] | None = None
    energy: list[AfrrEnergyChange] | None = None
    isps: list[IspReductionChange] | None = None
    price_eur_per_mwh: Number | None = None


class BidSummaryRead(BaseModel):
    """A bid as listed (without its content)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    market: str
    product: str
    pool: str
    period_start: datetime
    period_end: datetime
    delivery_day: date | None
    status: str
    version: int
    edited: bool
    gate_closure_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    awarded_at: datetime | None


class BidRead(BidSummaryRead):
    """A bid with its content (curves or bids) and build parameters."""

    content: dict[str, Any]
    params: dict[str, Any]


class AwardImport(BaseModel):
    """Awards to import: day-ahead clearing results, or an aFRR award list, as JSON or CSV text."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "csv"] = "json"
    content: Text = Field(min_length=1)


class AwardImported(BaseModel):
    """The bid after the import and how many commitments were recorded."""

    bid: BidRead
    commitments: int


class BidAuditRead(BaseModel):
    """One audited action."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    action: str
    actor_key_id: str | None
    actor_name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class CommitmentRead(BaseModel):
    """One obligation of a pool for one ISP."""

    pool: str
    isp_start: datetime
    kind: str
    power_kw: float
    price_eur_per_mwh: float | None
    source: str
    reference: str
