"""Tables of settlement results: one run per (day, pool); a recompute replaces the run's rows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class SettlementRun(Base):
    """The settlement of one pool's local delivery day: parameters, baseline method and totals."""

    __tablename__ = "settlement_runs"
    __table_args__ = (UniqueConstraint("day", "pool"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    day: Mapped[date]
    pool: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16))
    baseline_method: Mapped[str] = mapped_column(String(40))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SettlementIspResult(Base):
    """One ISP of a run: aFRR energy and money, metered vs scheduled energy and the imbalance cost."""

    __tablename__ = "settlement_isp_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True)
    isp_start: Mapped[datetime] = mapped_column(primary_key=True)
    isp: Mapped[int] = mapped_column(Integer)
    afrr_requested_mwh: Mapped[float] = mapped_column(Float)
    afrr_delivered_mwh: Mapped[float] = mapped_column(Float)
    afrr_shortfall_mwh: Mapped[float] = mapped_column(Float)
    afrr_counted_shortfall_mwh: Mapped[float] = mapped_column(Float)
    afrr_missing_steps: Mapped[int] = mapped_column(Integer)
    afrr_flagged_steps: Mapped[int] = mapped_column(Integer)
    afrr_price_eur_per_mwh: Mapped[float] = mapped_column(Float)
    afrr_price_source: Mapped[str] = mapped_column(String(16))
    afrr_payment_eur: Mapped[float] = mapped_column(Float)
    afrr_penalty_eur: Mapped[float] = mapped_column(Float)
    counterfactual_mwh: Mapped[float] = mapped_column(Float)
    scheduled_mwh: Mapped[float | None] = mapped_column(Float, default=None)
    metered_mwh: Mapped[float | None] = mapped_column(Float, default=None)
    gap_sessions: Mapped[int] = mapped_column(Integer, default=0)
    imbalance_mwh: Mapped[float | None] = mapped_column(Float, default=None)
    imbalance_price_eur_per_mwh: Mapped[float] = mapped_column(Float)
    imbalance_cost_eur: Mapped[float | None] = mapped_column(Float, default=None)


class SettlementActivationResult(Base):
    """One activation of a run (an aFRR activation or a FlexOrder) and what was attributed of it."""

    __tablename__ = "settlement_activation_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(120))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(4))
    requested_mwh: Mapped[float] = mapped_column(Float)
    delivered_mwh: Mapped[float] = mapped_column(Float)
    shortfall_mwh: Mapped[float] = mapped_column(Float)
    revenue_eur: Mapped[float] = mapped_column(Float)
    penalty_eur: Mapped[float] = mapped_column(Float)
    attributed_revenue_eur: Mapped[float] = mapped_column(Float)
    attributed_penalty_eur: Mapped[float] = mapped_column(Float)


class SettlementOrderResult(Base):
    """One ISP of one FlexOrder (or DSO reduction) of a run, with the DSO's verdict when there is one."""

    __tablename__ = "settlement_order_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True)
    reference: Mapped[str] = mapped_column(String(120), primary_key=True)
    isp_start: Mapped[datetime] = mapped_column(primary_key=True)
    isp: Mapped[int] = mapped_column(Integer)
    baseline_method: Mapped[str] = mapped_column(String(40))
    baseline_kw: Mapped[float | None] = mapped_column(Float, default=None)
    ordered_kw: Mapped[float] = mapped_column(Float)
    actual_kw: Mapped[float | None] = mapped_column(Float, default=None)
    delivered_kw: Mapped[float | None] = mapped_column(Float, default=None)
    deficiency_kw: Mapped[float | None] = mapped_column(Float, default=None)
    price_eur_per_mw: Mapped[float] = mapped_column(Float)
    penalty_eur_per_mw: Mapped[float] = mapped_column(Float)
    net_eur: Mapped[float | None] = mapped_column(Float, default=None)
    dso_status: Mapped[str | None] = mapped_column(String(16), default=None)
    dso_net_eur: Mapped[float | None] = mapped_column(Float, default=None)
    dso_reason: Mapped[str | None] = mapped_column(Text, default=None)


class SettlementSessionResult(Base):
    """One session of a run: contribution against its counterfactual, shares, CDR reconciliation and flags."""

    __tablename__ = "settlement_session_results"

    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id", ondelete="CASCADE"), primary_key=True)
    session_id: Mapped[str] = mapped_column(ID, primary_key=True)
    charger: Mapped[str] = mapped_column(String(160))
    baseline_method: Mapped[str] = mapped_column(String(40))
    counterfactual_kwh: Mapped[float] = mapped_column(Float)
    metered_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    contribution_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    activation_kwh: Mapped[list[float | None]] = mapped_column(JSON, default=list)
    revenue_eur: Mapped[float] = mapped_column(Float)
    penalty_eur: Mapped[float] = mapped_column(Float)
    net_eur: Mapped[float] = mapped_column(Float)
    charger_value_eur_per_month: Mapped[float] = mapped_column(Float)
    cdr_energy_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    session_metered_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    cdr_difference_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
