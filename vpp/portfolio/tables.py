"""Tables of the portfolio: the grid topology sessions belong to, charging needs and bookings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import Base, utcnow


class CongestionPoint(Base):
    """A DSO congestion point, identified by its EAN."""

    __tablename__ = "congestion_points"

    ean: Mapped[str] = mapped_column(String(64), primary_key=True)
    dso: Mapped[str] = mapped_column(String(120))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    max_kw: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Site(Base):
    """A site: one or more CPO locations behind one grid connection, optionally capacity-limited."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    capacity_kw: Mapped[float | None] = mapped_column(Float, default=None)
    congestion_point_ean: Mapped[str | None] = mapped_column(ForeignKey("congestion_points.ean"), default=None)
    bidding_zone: Mapped[str] = mapped_column(String(16), default="NL")
    category: Mapped[str] = mapped_column(String(16), default="public")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SiteLocation(Base):
    """Which site a CPO location belongs to (keys are case-folded, as the OCPI tables keep them)."""

    __tablename__ = "site_locations"

    party_key: Mapped[str] = mapped_column(String(8), primary_key=True)
    location_key: Mapped[str] = mapped_column(String(36), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)


class SiteLoad(Base):
    """The non-EV load of a site per ISP (kW), which shares the site's capacity with the chargers."""

    __tablename__ = "site_loads"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    isp_start: Mapped[datetime] = mapped_column(primary_key=True)
    load_kw: Mapped[float] = mapped_column(Float)


class ChargingNeedRow(Base):
    """An explicit charging need of a session, from an eMSP, an app or a car-sharing system."""

    __tablename__ = "charging_needs"

    session_id: Mapped[str] = mapped_column(ForeignKey("charging_sessions.id", ondelete="CASCADE"),
                                            primary_key=True)
    departure_at: Mapped[datetime]
    energy_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    target_soc_pct: Mapped[float | None] = mapped_column(Float, default=None)
    battery_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    discharge_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    min_soc_pct: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(String(16), default="explicit")
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Booking(Base):
    """A car-sharing booking: the car's next booking sets its departure."""

    __tablename__ = "bookings"
    __table_args__ = (Index("ix_bookings_vehicle_key_start_at", "vehicle_key", "start_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(String(64))
    vehicle_key: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    energy_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolPlan(Base):
    """A pool's latest per-car plan (one row per pool, replaced by every re-plan), read by the dispatcher.

    ``power_kw`` holds the present sessions' planned power for the first ``isps`` ISPs from ``start``
    (float32, sessions x ISPs, row-major, in the order of ``session_ids``); ``departure_s`` and ``target_kwh``
    (float64 per session: departure epoch seconds, energy delivered plus needed) are what the plan assumed, so
    a changed need is seen as one. ``pool_kw`` is the pool's planned profile over the whole horizon, forecast
    arrivals included.
    """

    __tablename__ = "pool_plans"

    pool: Mapped[str] = mapped_column(String(120), primary_key=True)
    planned_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    start: Mapped[datetime]
    isps: Mapped[int] = mapped_column(Integer)
    session_ids: Mapped[list[str]] = mapped_column(JSON)
    power_kw: Mapped[bytes] = mapped_column(LargeBinary)
    departure_s: Mapped[bytes] = mapped_column(LargeBinary)
    target_kwh: Mapped[bytes] = mapped_column(LargeBinary)
    pool_kw: Mapped[list[float]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(32))
    seconds: Mapped[float] = mapped_column(Float)


class SiteEquipmentRow(Base):
    """What sits behind a site's meter besides its chargers (vpp.domain.sites.SiteEquipment), one row per site.

    Battery SoC limits are kWh; ``battery_soc_kwh`` is its last metered state (at ``battery_soc_at``). ``tariff``
    holds the tariff as the API states it (periods as HH:MM strings), validated by the domain before it is stored.
    """

    __tablename__ = "site_equipment"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    import_max_kw: Mapped[float | None] = mapped_column(Float, default=None)
    export_max_kw: Mapped[float | None] = mapped_column(Float, default=None)
    subscription_kva: Mapped[float | None] = mapped_column(Float, default=None)
    power_factor: Mapped[float] = mapped_column(Float, default=1.0)
    pv_kwp: Mapped[float] = mapped_column(Float, default=0.0)
    battery_capacity_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    battery_power_kw: Mapped[float | None] = mapped_column(Float, default=None)
    battery_efficiency: Mapped[float | None] = mapped_column(Float, default=None)
    battery_min_soc_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    battery_max_soc_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    battery_cycle_eur_per_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    battery_soc_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    battery_soc_at: Mapped[datetime | None] = mapped_column(default=None)
    tariff: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SiteSeriesRow(Base):
    """A metered or forecast site series per ISP (kW, >= 0): ``pv`` production, grid ``import`` and ``export``.

    The building load keeps its own table (``site_loads``), which the dispatcher already subtracts from a site's
    capacity.
    """

    __tablename__ = "site_series"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    isp_start: Mapped[datetime] = mapped_column(primary_key=True)
    power_kw: Mapped[float] = mapped_column(Float)


class ChangeMark(Base):
    """A token the database replaces, by trigger, in every transaction that writes what the mark covers (migration
    ``0013_change_marks``): ``topology`` covers the locations' sites and the connectors' powers, which
    ``vpp.portfolio.fleet.TOPOLOGY`` keeps. A reader that kept frames under the token it reads now may use them
    again, whichever process wrote."""

    __tablename__ = "change_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)


class SiteSeriesMark(Base):
    """The change marker of one site's series (``load`` in ``site_loads``; ``pv``, ``import``, ``export`` in
    ``site_series``): every write replaces ``token`` with a new random one, keeps the one it replaced in
    ``previous`` and the span it wrote in ``changed_from`` .. ``changed_to`` (inclusive). A reader that kept the rows
    under ``previous`` need read only that span again; under any other token, everything (see
    ``vpp.portfolio.sites.SeriesHistoryCache``)."""

    __tablename__ = "site_series_marks"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)
    previous: Mapped[int | None] = mapped_column(BigInteger, default=None)
    changed_from: Mapped[datetime]
    changed_to: Mapped[datetime]


class SiteSignalRow(Base):
    """A grid signal over a time span: ``grid_stress`` (all sites of a bidding zone, or one site) or ``outage``."""

    __tablename__ = "site_signals"
    __table_args__ = (Index("ix_site_signals_kind_end_at", "kind", "end_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), default=None)
    bidding_zone: Mapped[str | None] = mapped_column(String(16), default=None)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    mode: Mapped[str] = mapped_column(String(16), default="stop")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SitePlanRow(Base):
    """A site's latest plan from its own planner (vpp.algorithms.site_planning): battery and meter per ISP."""

    __tablename__ = "site_plans"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    planned_at: Mapped[datetime]
    start: Mapped[datetime]
    battery_kw: Mapped[list[float]] = mapped_column(JSON)
    battery_soc_kwh: Mapped[list[float]] = mapped_column(JSON)
    import_kw: Mapped[list[float]] = mapped_column(JSON)
    export_kw: Mapped[list[float]] = mapped_column(JSON)
    cars_kw: Mapped[list[float]] = mapped_column(JSON)
    bill_eur: Mapped[dict[str, float]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
