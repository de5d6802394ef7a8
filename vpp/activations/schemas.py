"""API models of activations."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import Integer, Number, Pool, PoolOrKey, UtcDatetime

SIGN = (
    "aFRR sign: positive = upward regulation = LESS consumption by the pool (the pool's charging power goes "
    "down by this much), negative = downward regulation = MORE consumption."
)


class SetpointCreate(BaseModel):
    """One aFRR setpoint of the TSO for a pool's 4-second step."""

    model_config = ConfigDict(extra="forbid")

    pool: Pool = Field(description="Pool id `<kind>:<key>`, e.g. `zone:NL`.")
    seq: Integer = Field(
        ge=0, le=2**53 - 1,
        description="Sequence number, increasing per pool (at most 2^53 - 1, exact in every JSON parser); a repeat is "
                    "acknowledged and ignored.",
    )
    timestamp: UtcDatetime = Field(description="The time step the setpoint is for (UTC or with offset).")
    setpoint_mw: Number = Field(
        ge=-100_000, le=100_000, description=f"Requested aFRR power in MW. {SIGN}"
    )


class SetpointAck(BaseModel):
    """The acknowledgement of a setpoint: what is stored and applied."""

    model_config = ConfigDict(from_attributes=True)

    pool: str
    seq: int
    timestamp: datetime
    requested_mw: float = Field(description=f"As received. {SIGN}")
    setpoint_mw: float = Field(description=f"What the pool delivers: requested clipped to the award. {SIGN}")
    clipped: bool = Field(description="True when the request exceeded the awarded aFRR capacity of its ISP.")
    capacity_up_mw: float
    capacity_down_mw: float
    stale: bool = Field(description="True when a newer seq was already stored: kept, never applied over it.")
    duplicate: bool = Field(False, description="True when this seq was stored before: nothing changed.")
    received_at: datetime


class DsoLimitCreate(BaseModel):
    """A DSO congestion limit: a cap (max_kw) or an ordered reduction below the baseline (reduction_kw)."""

    model_config = ConfigDict(extra="forbid")

    congestion_point: PoolOrKey = Field(max_length=100, description="EAN or `congestion_point:<EAN>`.")
    start: UtcDatetime
    end: UtcDatetime = Field(description="After start, at most 31 days later.")
    max_kw: Number | None = Field(None, ge=0, description="Consumption cap of the point (give this or reduction_kw).")
    reduction_kw: Number | None = Field(None, ge=0, description="Reduction below the members' baseline.")


class CurtailmentCreate(BaseModel):
    """A §14a EnWG curtailment: each controllable device capped, never below 4.2 kW."""

    model_config = ConfigDict(extra="forbid")

    devices: list[PoolOrKey] | None = Field(
        None, max_length=10_000,
        description="Grid connections with a §14a device: site ids or `site:<id>` (give this or congestion_point).",
    )
    congestion_point: PoolOrKey | None = Field(None, max_length=100, description="All devices behind this point.")
    start: UtcDatetime
    end: UtcDatetime = Field(description="After start, at most 31 days later.")
    max_kw_per_device: Number = Field(ge=4.2)


class LimitRecorded(BaseModel):
    """DSO limits as stored: one commitment per pool and ISP overlapping [start, end), under one id."""

    id: str
    pools: list[str]
    kind: str
    power_kw: float
    isps: list[datetime]


class PoolResponseRead(BaseModel):
    """A pool's response in one 4-second step."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    setpoint_seq: int | None
    requested_mw: float = Field(description=f"Setpoint applied. {SIGN}")
    supplied_mw: float = Field(description=f"Supplied aFRR = (baseline - measured) / 1000. {SIGN}")
    target_kw: float = Field(description="Pool consumption the dispatcher aimed at (consumption sign).")
    measured_kw: float = Field(description="Measured pool consumption (positive = charging).")
    baseline_kw: float = Field(description="Pool consumption without activation: schedule or sessions' baseline.")
    supplied_kw: float = Field(description="measured_kw - baseline_kw (consumption sign, as Elia defines it).")
