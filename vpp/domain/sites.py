"""Behind the meter: what a site has besides its chargers, as frozen values that refuse what cannot be.

A site is one grid connection. Behind it: a building load and PV production (time series, kW averaged per ISP),
optionally a stationary battery, and the tariff its connection is billed on. Signs as everywhere in the domain:
positive power is consumption, so grid import is positive and export negative at the meter; PV production and
building load are magnitudes (>= 0), a battery's power is positive when it charges.

Every check names its reason, so the HTTP edge (400) and the scenario loader pass it on unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import ISP

SeriesKind = Literal["pv", "load"]
SERIES_KINDS: tuple[SeriesKind, ...] = ("pv", "load")
SERIES_UNITS = ("kW", "W", "kWh")  # kWh: energy per ISP, converted to kW; W converted to kW
CapacityPeriod = Literal["day", "month"]
EnergyPricing = Literal["tou", "dynamic"]
# A PV value above this many times the installed kWp is a unit mistake (W for kW), not weather.
PV_MAX_PER_KWP = 1.1
MINUTES_PER_DAY = 24 * 60


def _finite(value: float, name: str, *, low: float | None = None, positive: bool = False) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InvalidInput(f"{name} must be positive, got {value}")
    if low is not None and value < low:
        raise InvalidInput(f"{name} must be at least {low:g}, got {value}")
    return float(value)


@dataclass(frozen=True)
class Battery:
    """A stationary battery: usable energy between ``min_soc_kwh`` and ``max_soc_kwh`` of ``capacity_kwh``.

    ``efficiency`` is one way (charging and discharging each lose that share); ``cycle_cost_eur_per_kwh`` is the
    wear of every kWh it discharges.
    """

    capacity_kwh: float
    power_kw: float
    efficiency: float = 0.95
    min_soc_kwh: float = 0.0
    max_soc_kwh: float | None = None
    cycle_cost_eur_per_kwh: float = 0.0
    soc_kwh: float | None = None

    def __post_init__(self) -> None:
        _finite(self.capacity_kwh, "battery capacity_kwh", positive=True)
        _finite(self.power_kw, "battery power_kw", positive=True)
        if not 0.0 < _finite(self.efficiency, "battery efficiency") <= 1.0:
            raise InvalidInput(f"battery efficiency is a share in (0, 1], got {self.efficiency}")
        _finite(self.cycle_cost_eur_per_kwh, "battery cycle_cost_eur_per_kwh", low=0.0)
        top = self.upper_kwh
        for name, value in (("min_soc_kwh", self.min_soc_kwh), ("max_soc_kwh", top)):
            _finite(value, f"battery {name}")
            if not 0.0 <= value <= self.capacity_kwh:
                raise InvalidInput(f"battery {name} {value:g} is outside its capacity [0, {self.capacity_kwh:g}] kWh")
        if self.min_soc_kwh > top:
            raise InvalidInput(f"battery min_soc_kwh {self.min_soc_kwh:g} is above max_soc_kwh {top:g}")
        if self.soc_kwh is not None:
            _finite(self.soc_kwh, "battery soc_kwh")
            if not 0.0 <= self.soc_kwh <= self.capacity_kwh:
                raise InvalidInput(f"battery soc_kwh {self.soc_kwh:g} is outside its capacity "
                                   f"[0, {self.capacity_kwh:g}] kWh")

    @property
    def upper_kwh(self) -> float:
        """The highest state of charge it may reach."""
        return self.capacity_kwh if self.max_soc_kwh is None else self.max_soc_kwh

    @classmethod
    def from_pct(cls, *, capacity_kwh: float, power_kw: float, efficiency: float = 0.95, min_soc_pct: float = 0.0,
                 max_soc_pct: float = 100.0, cycle_cost_eur_per_kwh: float = 0.0,
                 soc_kwh: float | None = None) -> Battery:
        """SoC limits as % of the capacity (refused outside 0-100 %, as the kWh form refuses them)."""
        for name, pct in (("min_soc_pct", min_soc_pct), ("max_soc_pct", max_soc_pct)):
            if not 0.0 <= _finite(pct, f"battery {name}") <= 100.0:
                raise InvalidInput(f"battery {name} {pct:g} is outside its capacity (0-100 %)")
        capacity = _finite(capacity_kwh, "battery capacity_kwh", positive=True)
        return cls(capacity_kwh=capacity, power_kw=power_kw, efficiency=efficiency,
                   min_soc_kwh=capacity * min_soc_pct / 100.0, max_soc_kwh=capacity * max_soc_pct / 100.0,
                   cycle_cost_eur_per_kwh=cycle_cost_eur_per_kwh, soc_kwh=soc_kwh)


@dataclass(frozen=True)
class GridConnection:
    """What the connection allows: import and export limits (kW) and a subscription in kVA.

    The subscription caps import as well (at ``power_factor`` kW per kVA); None means no such limit.
    """

    import_max_kw: float | None = None
    export_max_kw: float | None = None
    subscription_kva: float | None = None
    power_factor: float = 1.0

    def __post_init__(self) -> None:
        for name in ("import_max_kw", "subscription_kva"):
            value = getattr(self, name)
            if value is not None:
                _finite(value, name, positive=True)
        if self.export_max_kw is not None:
            _finite(self.export_max_kw, "export_max_kw", low=0.0)
        if not 0.0 < _finite(self.power_factor, "power_factor") <= 1.0:
            raise InvalidInput(f"power_factor is in (0, 1], got {self.power_factor}")

    @property
    def import_limit_kw(self) -> float:
        """The tighter of the import limit and the subscription (inf: none)."""
        limits = [self.import_max_kw or math.inf]
        if self.subscription_kva is not None:
            limits.append(self.subscription_kva * self.power_factor)
        return min(limits)

    @property
    def export_limit_kw(self) -> float:
        """The export limit (inf: none)."""
        return math.inf if self.export_max_kw is None else self.export_max_kw

    def check_base_load(self, load_kw: Sequence[float]) -> None:
        """Refuse a connection whose import limit is below the building's own base load (its least load)."""
        if not load_kw:
            return
        base = min(load_kw)
        if base > self.import_limit_kw + 1e-9:
            what = (f"subscription of {self.subscription_kva:g} kVA" if self.subscription_kva is not None
                    and self.subscription_kva * self.power_factor <= (self.import_max_kw or math.inf)
                    else f"import limit of {self.import_limit_kw:g} kW")
            raise InvalidInput(f"the {what} is below the building's own base load of {base:g} kW: the site could "
                               "not even run without its chargers")


@dataclass(frozen=True)
class PowerSeries:
    """A time series of average kW per ISP from ``start`` (UTC, on the ISP grid)."""

    kind: SeriesKind
    start: datetime
    values_kw: tuple[float, ...]

    @property
    def end(self) -> datetime:
        """The end of its last ISP."""
        return self.start + ISP * len(self.values_kw)

    def at(self, moment: datetime) -> float | None:
        """The value of the ISP holding ``moment``; None outside the series."""
        k = int((moment - self.start) // ISP)
        return self.values_kw[k] if 0 <= k < len(self.values_kw) else None


def power_series(kind: str, start: datetime, values: Sequence[float], *, unit: str = "kW",
                 end: datetime | None = None, pv_kwp: float | None = None) -> PowerSeries:
    """A PV or load series from raw input, refused with its reason when its length, unit or values are wrong.

    ``end``, when given, must be exactly where the values stop (one value per ISP); ``unit`` is kW (average
    power), W (converted) or kWh per ISP (converted); with ``pv_kwp`` a PV value above 1.1 kW per kWp is refused
    as a unit mistake.
    """
    if kind not in SERIES_KINDS:
        raise InvalidInput(f"series kind {kind!r} is unknown; one of {list(SERIES_KINDS)}")
    if unit not in SERIES_UNITS:
        raise InvalidInput(f"{kind} unit {unit!r} is unknown; give kW (average power per ISP), W or kWh per ISP")
    if start.tzinfo is None:
        raise InvalidInput(f"{kind} start {start.isoformat()} has no time zone")
    if start.minute % 15 or start.second or start.microsecond:
        raise InvalidInput(f"{kind} start {start.isoformat()} is not on the 15-minute grid")
    if not values:
        raise InvalidInput(f"{kind} series has no values")
    if end is not None:
        if end.tzinfo is None:
            raise InvalidInput(f"{kind} end {end.isoformat()} has no time zone")
        expected = (end - start) / ISP
        if expected != int(expected) or int(expected) != len(values):
            raise InvalidInput(f"{kind} series has {len(values)} values but {start.isoformat()} to {end.isoformat()} "
                               f"is {expected:g} ISPs: one value per 15 minutes")
    scale = {"kW": 1.0, "W": 0.001, "kWh": 1.0 / (ISP.total_seconds() / 3600.0)}[unit]
    out = []
    for k, raw in enumerate(values):
        value = _finite(raw, f"{kind} value {k}") * scale
        if value < 0:
            raise InvalidInput(f"{kind} value {k} is {raw}: production and load are magnitudes (>= 0)")
        out.append(value)
    if kind == "pv" and pv_kwp is not None:
        most = max(out)
        if most > PV_MAX_PER_KWP * pv_kwp + 1e-9:
            raise InvalidInput(f"pv peaks at {most:g} kW on {pv_kwp:g} kWp installed: more than {PV_MAX_PER_KWP:g} kW "
                               f"per kWp, so the unit is wrong (W given as kW?)")
    return PowerSeries(kind="pv" if kind == "pv" else "load", start=start.astimezone(ZoneInfo("UTC")),
                       values_kw=tuple(out))


@dataclass(frozen=True)
class TouPeriod:
    """A local time-of-day window with its import price; ``end`` <= ``start`` wraps past midnight."""

    name: str
    start: time
    end: time
    price_eur_per_kwh: float

    def minutes(self) -> list[tuple[int, int]]:
        """[begin, end) minute spans of the day it covers (two when it wraps midnight)."""
        a = self.start.hour * 60 + self.start.minute
        b = self.end.hour * 60 + self.end.minute
        if b > a:
            return [(a, b)]
        return [(a, MINUTES_PER_DAY), (0, b)] if b > 0 else [(a, MINUTES_PER_DAY)]


@dataclass(frozen=True)
class Tariff:
    """How a site's grid exchange is billed.

    ``energy``: ``tou`` prices import by ``periods`` (covering the day once, e.g. peak / off-peak);
    ``dynamic`` at the day-ahead price plus ``markup_eur_per_kwh``. Export earns ``export_eur_per_kwh`` (flat)
    or, with ``export_dynamic``, the day-ahead price. ``capacity_eur_per_kw`` is charged on the highest ISP import of
    each ``capacity_period`` (day or month: a power or capacity tariff). ``v2g_cycle_eur_per_kwh`` is the wear of
    every kWh a car feeds back.
    """

    energy: EnergyPricing = "tou"
    periods: tuple[TouPeriod, ...] = ()
    markup_eur_per_kwh: float = 0.0
    export_eur_per_kwh: float = 0.0
    export_dynamic: bool = False
    capacity_eur_per_kw: float = 0.0
    capacity_period: CapacityPeriod = "month"
    v2g_cycle_eur_per_kwh: float = 0.0
    timezone: str = "Europe/Amsterdam"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.energy not in ("tou", "dynamic"):
            raise InvalidInput(f"tariff energy {self.energy!r} is unknown; tou or dynamic")
        if self.capacity_period not in ("day", "month"):
            raise InvalidInput(f"capacity_period {self.capacity_period!r} is unknown; day or month")
        for name in ("capacity_eur_per_kw", "v2g_cycle_eur_per_kwh"):
            _finite(getattr(self, name), name, low=0.0)
        _finite(self.markup_eur_per_kwh, "markup_eur_per_kwh")
        _finite(self.export_eur_per_kwh, "export_eur_per_kwh")
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except (KeyError, ValueError) as exc:
            raise InvalidInput(f"tariff timezone {self.timezone!r} is unknown") from exc
        if self.energy == "tou":
            _check_periods(self.periods)
        elif self.periods:
            raise InvalidInput("a dynamic tariff takes no time-of-use periods (give markup_eur_per_kwh)")

    def import_eur_per_kwh(self, isp_starts: Sequence[datetime], spot_eur_per_mwh: Sequence[float]) -> list[float]:
        """Import price per ISP (spot prices are needed for a dynamic tariff only)."""
        if self.energy == "dynamic":
            if len(spot_eur_per_mwh) != len(isp_starts):
                raise InvalidInput("a dynamic tariff needs one day-ahead price per ISP")
            return [p / 1000.0 + self.markup_eur_per_kwh for p in spot_eur_per_mwh]
        return [self.period_at(t).price_eur_per_kwh for t in isp_starts]

    def export_price_eur_per_kwh(self, isp_starts: Sequence[datetime],
                                 spot_eur_per_mwh: Sequence[float]) -> list[float]:
        """Export revenue per exported kWh and ISP."""
        if self.export_dynamic:
            return [p / 1000.0 for p in spot_eur_per_mwh]
        return [self.export_eur_per_kwh] * len(isp_starts)

    def period_at(self, moment: datetime) -> TouPeriod:
        """The time-of-use period holding ``moment`` (local time)."""
        local = moment.astimezone(self._zone)
        minute = local.hour * 60 + local.minute
        for period in self.periods:
            if any(a <= minute < b for a, b in period.minutes()):
                return period
        raise InvalidInput(f"no tariff period holds {local.isoformat()}")  # _check_periods rules this out

    def capacity_bucket(self, moment: datetime) -> tuple[int, int, int]:
        """The billing period of ``moment`` for the capacity charge: (year, month, day or 0)."""
        local = moment.astimezone(self._zone)
        return local.year, local.month, local.day if self.capacity_period == "day" else 0


def _check_periods(periods: Sequence[TouPeriod]) -> None:
    """Periods must cover the day exactly once: an overlap or a gap is refused, naming the periods and times."""
    if not periods:
        raise InvalidInput("a time-of-use tariff needs periods that cover the day")
    spans: list[tuple[int, int, str]] = []
    for period in periods:
        _finite(period.price_eur_per_kwh, f"price of period {period.name!r}")
        if period.start == period.end and (period.start.hour, period.start.minute) != (0, 0):
            raise InvalidInput(f"period {period.name!r} starts and ends at {period.start:%H:%M}")
        spans.extend((a, b, period.name) for a, b in period.minutes())
    spans.sort()
    reached = 0
    last_name = ""
    for a, b, name in spans:
        if a < reached:
            overlap = f"{_hhmm(a)}-{_hhmm(min(b, reached))}"
            raise InvalidInput(f"tariff periods {last_name!r} and {name!r} overlap at {overlap}")
        if a > reached:
            raise InvalidInput(f"tariff periods leave {_hhmm(reached)}-{_hhmm(a)} without a price")
        reached, last_name = b, name
    if reached < MINUTES_PER_DAY:
        raise InvalidInput(f"tariff periods leave {_hhmm(reached)}-24:00 without a price")


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def tou_period(name: str, start: str, end: str, price_eur_per_kwh: float) -> TouPeriod:
    """A period from ``HH:MM`` strings (``24:00`` is midnight), refused when a time is not one."""
    try:
        begin = time.fromisoformat(start)
        finish = time(0, 0) if end == "24:00" else time.fromisoformat(end)
    except ValueError as exc:
        raise InvalidInput(f"period {name!r}: times are HH:MM, got {start!r}-{end!r}") from exc
    return TouPeriod(name=name, start=begin, end=finish, price_eur_per_kwh=price_eur_per_kwh)


@dataclass(frozen=True)
class SiteEquipment:
    """Everything behind one site's meter besides its chargers."""

    site_id: str
    connection: GridConnection = field(default_factory=GridConnection)
    pv_kwp: float = 0.0
    battery: Battery | None = None
    tariff: Tariff | None = None

    def __post_init__(self) -> None:
        _finite(self.pv_kwp, "pv_kwp", low=0.0)

    @property
    def behind_the_meter(self) -> bool:
        """True when the site has anything its own planner must see (PV, a battery, a tariff)."""
        return self.pv_kwp > 0 or self.battery is not None or self.tariff is not None


def isp_starts(start: datetime, count: int) -> list[datetime]:
    """``count`` ISP starts from ``start``."""
    return [start + timedelta(minutes=15 * k) for k in range(count)]
