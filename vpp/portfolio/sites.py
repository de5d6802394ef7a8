"""Sites behind the meter: their equipment, metered series, grid signals, and their own plans.

The seam with the rolling-horizon planner (``vpp.portfolio.planning.replan``): after a pool is planned,
``plan_sites`` plans every *equipped* site of the pool that has cars plugged in (a site with PV, a battery or a
tariff) on its own with the exact site planner (``vpp.algorithms.site_planning.plan_site``), and the cars of that
site take the site plan's rows instead of the pool plan's. Sites without equipment are left exactly as the pool
planner made them, so nothing changes for them. A site without cars is planned on request (``plan_site_now``,
``POST /api/v1/portfolio/sites/{id}/plan``), so its battery has a plan at night too.

Forecasts from history: a PV or load value the owner or the meter stated for an ISP is used as it is; an ISP
without one takes the value of the same local time on the latest of the seven days before (seasonal naive),
else 0.
"""

from __future__ import annotations

import math
import secrets
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vpp.algorithms.dispatch import PLAN_FLOOR_DERATE, car_power_kw
from vpp.algorithms.site_planning import SitePlan, SiteProblem, plan_site, plan_sites_together
from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.domain.isp import ISP, IspHorizon, delivery_day_bounds, delivery_day_of, floor_to_isp
from vpp.domain.sites import (
    Battery,
    GridConnection,
    PowerSeries,
    SiteEquipment,
    Tariff,
    isp_starts,
    power_series,
    tou_period,
)
from vpp.portfolio.tables import (
    Site,
    SiteEquipmentRow,
    SiteLoad,
    SitePlanRow,
    SiteSeriesMark,
    SiteSeriesRow,
    SiteSignalRow,
)

if TYPE_CHECKING:
    from vpp.algorithms.planning import Plan, PlanProblem
    from vpp.portfolio.fleet import Fleet

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ISP_H = ISP.total_seconds() / 3600.0
ISP_S = int(ISP.total_seconds())
ISPS_PER_DAY = int(timedelta(days=1) / ISP)
HISTORY_DAYS = 7
SIGNAL_KINDS = ("grid_stress", "outage")
STRESS_MODES = ("stop", "discharge")
# What a kWh fed back during a grid-stress signal of mode "discharge" is worth to the planner (EUR/kWh).
STRESS_DISCHARGE_CREDIT_EUR_PER_KWH = 0.5


# ----------------------------------------------------------------------------------------- equipment


def tariff_from_spec(spec: Mapping[str, Any]) -> Tariff:
    """A tariff from its API / scenario form (periods as ``{name, start, end, price_eur_per_kwh}``)."""
    known = {"energy", "periods", "markup_eur_per_kwh", "export_eur_per_kwh", "export_dynamic", "capacity_eur_per_kw",
             "capacity_period", "v2g_cycle_eur_per_kwh", "timezone"}
    unknown = set(spec) - known
    if unknown:
        raise InvalidInput(f"tariff: unknown field(s) {sorted(unknown)}")
    periods = []
    for k, raw in enumerate(spec.get("periods") or []):
        try:
            periods.append(tou_period(str(raw["name"]), str(raw["start"]), str(raw["end"]),
                                      float(raw["price_eur_per_kwh"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"tariff period {k}: needs name, start, end and price_eur_per_kwh ({exc})") from exc
    values = {key: spec[key] for key in known - {"periods"} if key in spec}
    return Tariff(periods=tuple(periods), **values)


def equipment_of(row: SiteEquipmentRow) -> SiteEquipment:
    """The domain value of a stored row."""
    battery = None
    if row.battery_capacity_kwh is not None and row.battery_power_kw is not None:
        battery = Battery(capacity_kwh=row.battery_capacity_kwh, power_kw=row.battery_power_kw,
                          efficiency=row.battery_efficiency or 0.95, min_soc_kwh=row.battery_min_soc_kwh or 0.0,
                          max_soc_kwh=row.battery_max_soc_kwh,
                          cycle_cost_eur_per_kwh=row.battery_cycle_eur_per_kwh or 0.0, soc_kwh=row.battery_soc_kwh)
    return SiteEquipment(
        site_id=row.site_id,
        connection=GridConnection(import_max_kw=row.import_max_kw, export_max_kw=row.export_max_kw,
                                  subscription_kva=row.subscription_kva, power_factor=row.power_factor),
        pv_kwp=row.pv_kwp, battery=battery, tariff=tariff_from_spec(row.tariff) if row.tariff else None)


def _site(db: Session, site_id: str) -> Site:
    site = db.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id!r} does not exist")
    return site


def _loads(db: Session, site_id: str) -> list[float]:
    return [float(v) for v in db.scalars(select(SiteLoad.load_kw).where(SiteLoad.site_id == site_id))]


def check_equipment(equipment: SiteEquipment, loads_kw: Sequence[float]) -> None:
    """What the values cannot check alone: the connection against the building's base load."""
    equipment.connection.check_base_load(loads_kw)


def put_equipment(db: Session, equipment: SiteEquipment, tariff_spec: Mapping[str, Any] | None) -> SiteEquipmentRow:
    """Create or replace a site's equipment; its import limit becomes the site's capacity (the dispatcher's cap)."""
    site = _site(db, equipment.site_id)
    check_equipment(equipment, _loads(db, site.id))
    row = db.get(SiteEquipmentRow, site.id)
    if row is None:
        row = SiteEquipmentRow(site_id=site.id)
        db.add(row)
    c, b = equipment.connection, equipment.battery
    row.import_max_kw, row.export_max_kw = c.import_max_kw, c.export_max_kw
    row.subscription_kva, row.power_factor, row.pv_kwp = c.subscription_kva, c.power_factor, equipment.pv_kwp
    row.battery_capacity_kwh = b.capacity_kwh if b else None
    row.battery_power_kw = b.power_kw if b else None
    row.battery_efficiency = b.efficiency if b else None
    row.battery_min_soc_kwh = b.min_soc_kwh if b else None
    row.battery_max_soc_kwh = b.upper_kwh if b else None
    row.battery_cycle_eur_per_kwh = b.cycle_cost_eur_per_kwh if b else None
    if b is None:
        row.battery_soc_kwh = row.battery_soc_at = None
    elif b.soc_kwh is not None:
        row.battery_soc_kwh = b.soc_kwh
    row.tariff = dict(tariff_spec) if tariff_spec else None
    row.updated_at = utcnow()
    if math.isfinite(c.import_limit_kw):
        site.capacity_kw = min(site.capacity_kw or math.inf, c.import_limit_kw)
        site.updated_at = utcnow()
    db.flush()
    return row


def put_series(db: Session, site_id: str, series: PowerSeries | tuple[str, PowerSeries]) -> int:
    """Store a PV, load or meter series (metered, or the owner's forecast) over its span; the count of ISPs.

    A load series is checked against the site's subscription (its base load must fit under it) before anything
    is written.
    """
    kind, values = (series.kind, series) if isinstance(series, PowerSeries) else series
    _site(db, site_id)
    starts = [values.start + ISP * k for k in range(len(values.values_kw))]
    if kind == "load":
        row = db.get(SiteEquipmentRow, site_id)
        if row is not None:
            equipment_of(row).connection.check_base_load(values.values_kw)
        db.execute(delete(SiteLoad).where(SiteLoad.site_id == site_id, SiteLoad.isp_start >= starts[0],
                                          SiteLoad.isp_start <= starts[-1]))
        _insert(db, SiteLoad, [{"site_id": site_id, "isp_start": at, "load_kw": kw}
                               for at, kw in zip(starts, values.values_kw, strict=True)])
        mark_series_written(db, [site_id], kind, starts[0], starts[-1])
    else:
        if kind not in ("pv", "import", "export"):
            raise InvalidInput(f"series kind {kind!r} is unknown; pv, load, import or export")
        db.execute(delete(SiteSeriesRow).where(SiteSeriesRow.site_id == site_id, SiteSeriesRow.kind == kind,
                                               SiteSeriesRow.isp_start >= starts[0],
                                               SiteSeriesRow.isp_start <= starts[-1]))
        _insert(db, SiteSeriesRow, [{"site_id": site_id, "kind": kind, "isp_start": at, "power_kw": kw}
                                    for at, kw in zip(starts, values.values_kw, strict=True)])
        mark_series_written(db, [site_id], kind, starts[0], starts[-1])
    db.flush()
    return len(starts)


def _insert(db: Session, table: type[SiteLoad] | type[SiteSeriesRow], rows: list[dict[str, Any]]) -> None:
    """One INSERT of many rows (executemany): a meter's readings arrive every ISP for every site, and the unit of
    work's per-object bookkeeping cost more than the statement."""
    if rows:
        db.execute(insert(table), rows)


@dataclass(frozen=True)
class MeterReading:
    """One ISP of a site's meter: building load, PV, grid import and export (kW averages), battery SoC (kWh)."""

    site_id: str
    isp_start: datetime
    load_kw: float | None = None
    pv_kw: float | None = None
    import_kw: float | None = None
    export_kw: float | None = None
    battery_soc_kwh: float | None = None


def put_readings(db: Session, readings: Sequence[MeterReading]) -> int:
    """Store many sites' meter readings at once (checked first: nothing is written when one is wrong)."""
    values: dict[str, list[tuple[str, datetime, float]]] = {"load": [], "pv": [], "import": [], "export": []}
    named = {r.site_id for r in readings}
    equipment = {row.site_id: row for row in db.scalars(select(SiteEquipmentRow).where(
        SiteEquipmentRow.site_id.in_(named)))}
    known = set(db.scalars(select(Site.id).where(Site.id.in_(named))))  # one query, not one per reading
    for reading in readings:
        if reading.site_id not in known:
            raise NotFound(f"site {reading.site_id!r} does not exist")
        for kind, value in (("load", reading.load_kw), ("pv", reading.pv_kw), ("import", reading.import_kw),
                            ("export", reading.export_kw)):
            if value is None:
                continue
            try:
                series = power_series("pv" if kind == "pv" else "load", reading.isp_start, [value])
                row = equipment.get(reading.site_id)
                if kind == "load" and row is not None:
                    equipment_of(row).connection.check_base_load(series.values_kw)
            except InvalidInput as exc:
                raise InvalidInput(f"site {reading.site_id} {kind}: {exc.message}") from exc
            values[kind].append((reading.site_id, series.start, series.values_kw[0]))
        if reading.battery_soc_kwh is not None:
            row = equipment.get(reading.site_id)
            if row is None or row.battery_capacity_kwh is None:
                raise NotFound(f"site {reading.site_id!r} has no battery")
    for kind, rows in values.items():
        for at in {at for _, at, _ in rows}:
            ids = [sid for sid, when, _ in rows if when == at]
            if kind == "load":
                db.execute(delete(SiteLoad).where(SiteLoad.site_id.in_(ids), SiteLoad.isp_start == at))
            else:
                db.execute(delete(SiteSeriesRow).where(SiteSeriesRow.site_id.in_(ids), SiteSeriesRow.kind == kind,
                                                       SiteSeriesRow.isp_start == at))
        if kind == "load":
            _insert(db, SiteLoad, [{"site_id": sid, "isp_start": at, "load_kw": kw} for sid, at, kw in rows])
        else:
            _insert(db, SiteSeriesRow, [{"site_id": sid, "kind": kind, "isp_start": at, "power_kw": kw}
                                        for sid, at, kw in rows])
        # One marker per site: the span from its first to its last ISP written (sites alike share a statement).
        spans: dict[str, tuple[datetime, datetime]] = {}
        for sid, at, _ in rows:
            first, last = spans.get(sid, (at, at))
            spans[sid] = (min(first, at), max(last, at))
        by_span: dict[tuple[datetime, datetime], list[str]] = {}
        for sid, span in spans.items():
            by_span.setdefault(span, []).append(sid)
        for (first, last), ids in by_span.items():
            mark_series_written(db, ids, kind, first, last)
    for reading in readings:
        if reading.battery_soc_kwh is not None:
            put_battery_soc(db, reading.site_id, reading.battery_soc_kwh, reading.isp_start)
    db.flush()
    return len(readings)


def put_battery_soc(db: Session, site_id: str, soc_kwh: float, at: datetime) -> None:
    """The battery's metered state of charge."""
    row = db.get(SiteEquipmentRow, site_id)
    if row is None or row.battery_capacity_kwh is None:
        raise NotFound(f"site {site_id!r} has no battery")
    if not math.isfinite(soc_kwh) or not 0.0 <= soc_kwh <= row.battery_capacity_kwh + 1e-6:
        raise InvalidInput(f"battery soc_kwh {soc_kwh} is outside its capacity [0, {row.battery_capacity_kwh:g}] kWh")
    row.battery_soc_kwh, row.battery_soc_at = min(soc_kwh, row.battery_capacity_kwh), at
    db.flush()


def add_signal(db: Session, kind: str, start: datetime, end: datetime, *, site_id: str | None = None,
               bidding_zone: str | None = None, mode: str = "stop") -> SiteSignalRow:
    """A grid-stress signal (a site, or every site of a bidding zone) or an outage (one site)."""
    if kind not in SIGNAL_KINDS:
        raise InvalidInput(f"signal kind {kind!r} is unknown; one of {list(SIGNAL_KINDS)}")
    if mode not in STRESS_MODES:
        raise InvalidInput(f"mode {mode!r} is unknown; one of {list(STRESS_MODES)}")
    if end <= start:
        raise InvalidInput("a signal must end after it starts")
    if kind == "outage" and site_id is None:
        raise InvalidInput("an outage names its site")
    if site_id is None and bidding_zone is None:
        raise InvalidInput("a grid-stress signal names a site or a bidding zone")
    if site_id is not None:
        _site(db, site_id)
    row = SiteSignalRow(kind=kind, site_id=site_id, bidding_zone=bidding_zone, start_at=start, end_at=end, mode=mode)
    db.add(row)
    db.flush()
    return row


# ----------------------------------------------------------------------------------------- kept history


def mark_series_written(db: Session, site_ids: Iterable[str], kind: str, first: datetime, last: datetime) -> None:
    """After a write of ``first`` .. ``last`` (inclusive) of the ``kind`` series of ``site_ids``: their markers take a
    new random token, keep the one it replaces and the span (``SiteSeriesMark``).

    One UPDATE for all of them (one token: a marker is read per site, so sites may share it), which replaces the
    token in the database (``previous`` set from the row as it is then), so two writers never leave a marker whose
    ``previous`` skips the other's write; an upsert for the sites without a marker yet. Random tokens (not the
    simulation's seeded ``random``) never repeat: a write rolled back or a site made anew cannot match rows kept."""
    ids = sorted(set(site_ids))
    if not ids:
        return
    token = secrets.randbits(63)
    done = db.execute(update(SiteSeriesMark).where(SiteSeriesMark.kind == kind, SiteSeriesMark.site_id.in_(ids))
                      .values(previous=SiteSeriesMark.token, token=token, changed_from=first, changed_to=last)
                      .execution_options(synchronize_session=False))
    if getattr(done, "rowcount", -1) == len(ids):
        return
    have = set(db.scalars(select(SiteSeriesMark.site_id).where(SiteSeriesMark.kind == kind,
                                                                SiteSeriesMark.site_id.in_(ids))))
    missing = [sid for sid in ids if sid not in have]
    if not missing:
        return
    upsert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = upsert(SiteSeriesMark).values([{"site_id": sid, "kind": kind, "token": token, "previous": None,
                                           "changed_from": first, "changed_to": last} for sid in missing])
    db.execute(stmt.on_conflict_do_update(
        index_elements=[SiteSeriesMark.site_id, SiteSeriesMark.kind],
        set_={"previous": SiteSeriesMark.token, "token": stmt.excluded.token,
              "changed_from": stmt.excluded.changed_from, "changed_to": stmt.excluded.changed_to}))


Rows = tuple[IntArray, FloatArray]


def _read_series(db: Session, site_ids: Sequence[str], kind: str, first: datetime, end: datetime, *,
                 inclusive: bool = False) -> dict[str, Rows]:
    """Per site, the ISP numbers (epoch seconds // ISP) and values of the rows from ``first`` to before ``end`` (to
    ``end`` with ``inclusive``); rows off the ISP grid are left out (no ISP's value). One query for all."""
    if kind == "load":
        sid_col, at_col, kw_col = SiteLoad.site_id, SiteLoad.isp_start, SiteLoad.load_kw
        where: list[ColumnElement[bool]] = [SiteLoad.site_id.in_(site_ids)]
    else:
        sid_col, at_col, kw_col = SiteSeriesRow.site_id, SiteSeriesRow.isp_start, SiteSeriesRow.power_kw
        where = [SiteSeriesRow.site_id.in_(site_ids), SiteSeriesRow.kind == kind]
    found: dict[str, tuple[list[float], list[float]]] = {sid: ([], []) for sid in site_ids}
    for sid, at, kw in db.execute(select(sid_col, at_col, kw_col).where(
            *where, at_col >= first, at_col <= end if inclusive else at_col < end)):
        times, kws = found[sid]
        times.append(at.timestamp())
        kws.append(float(kw))
    out = {}
    for sid, (times, kws) in found.items():
        seconds = np.asarray(times, dtype=np.float64)
        values = np.asarray(kws, dtype=np.float64)
        on_grid = seconds % ISP_S == 0
        out[sid] = ((seconds[on_grid] // ISP_S).astype(np.int64), values[on_grid])
    return out


@dataclass(frozen=True)
class _KeptSeries:
    token: int
    lo: int  # the ISP numbers [lo, hi) are as the database held them under ``token``
    hi: int
    numbers: IntArray  # sorted
    values: FloatArray


class SeriesHistoryCache:
    """The metered history of each site's series, kept per database between re-plans.

    Each re-plan forecasts every equipped site's PV and load from a week of history, of which the meter changed one
    ISP since the last re-plan. The rows read are kept with the token of the site's marker (``SiteSeriesMark``) read
    *before* them: when the marker still holds that token nothing is read; when its ``previous`` is that token (one
    write since), only the span it wrote is read again; otherwise (several writes, a write rolled back, a site made
    anew) everything; without a marker (rows written around the writers of this module) everything, every time.
    Rows read after the marker are at least as new as it, so a write between the two is read again next time (its
    marker follows the one kept). The kept span follows the asked one: ISPs before it are read and kept as asked,
    those a day behind it dropped. The sites of one re-plan are read together: one query for their markers and one
    per kind of read (whole, a span, the days the horizon moved on to)."""

    DROP_AFTER_ISPS = ISPS_PER_DAY

    def __init__(self) -> None:
        self._kept: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], _KeptSeries]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.full_reads = 0
        self.span_reads = 0
        self.kept_reads = 0

    def clear(self) -> None:
        """Forget every kept series."""
        with self._lock:
            self._kept.clear()

    def rows(self, db: Session, site_ids: Sequence[str], kind: str, lo: int, hi: int) -> dict[str, Rows]:
        """Per site, the on-grid ISP numbers in ``[lo, hi)`` of its ``kind`` series (sorted) and their values, as
        the database holds them now."""
        ids = list(dict.fromkeys(site_ids))
        if not ids:
            return {}
        marks = {sid: (token, previous, changed_from, changed_to) for sid, token, previous, changed_from, changed_to
                 in db.execute(select(SiteSeriesMark.site_id, SiteSeriesMark.token, SiteSeriesMark.previous,
                                      SiteSeriesMark.changed_from, SiteSeriesMark.changed_to).where(
                     SiteSeriesMark.kind == kind, SiteSeriesMark.site_id.in_(ids)))}
        bind = db.get_bind()
        with self._lock:
            kept_now = self._kept.get(bind, {})
            kept = {sid: kept_now.get((sid, kind)) for sid in ids}
        whole: list[str] = []
        spans: dict[tuple[datetime, datetime], list[str]] = {}
        result: dict[str, _KeptSeries] = {}
        for sid in ids:
            mark, old = marks.get(sid), kept[sid]
            if mark is None or old is None or old.token not in (mark[0], mark[1]):
                whole.append(sid)
            elif old.token == mark[0]:
                self.kept_reads += 1
                result[sid] = old
            else:
                spans.setdefault((mark[2], mark[3]), []).append(sid)
        if whole:
            self.full_reads += len(whole)
            for sid, (numbers, values) in _read_series(db, whole, kind, _isp_time(lo), _isp_time(hi)).items():
                result[sid] = _KeptSeries(marks[sid][0] if sid in marks else 0, lo, hi, numbers, values)
        for (changed_from, changed_to), span_ids in spans.items():
            self.span_reads += len(span_ids)
            first, last = changed_from.timestamp(), changed_to.timestamp()
            for sid, (numbers, values) in _read_series(db, span_ids, kind, changed_from, changed_to,
                                                       inclusive=True).items():
                old = kept[sid]
                assert old is not None
                seconds = old.numbers * ISP_S
                unchanged = (seconds < first) | (seconds > last)
                inside = (numbers >= old.lo) & (numbers < old.hi)
                result[sid] = _KeptSeries(marks[sid][0], old.lo, old.hi,
                                          np.concatenate([old.numbers[unchanged], numbers[inside]]),
                                          np.concatenate([old.values[unchanged], values[inside]]))
        # The ISPs asked for beyond those kept (the horizon moved on), read for the sites alike at once.
        extend: dict[tuple[int, int], list[str]] = {}
        for sid, series in result.items():
            if lo < series.lo:
                extend.setdefault((lo, series.lo), []).append(sid)
            if hi > series.hi:
                extend.setdefault((series.hi, hi), []).append(sid)
        for (start, end), more_ids in extend.items():
            for sid, (numbers, values) in _read_series(db, more_ids, kind, _isp_time(start),
                                                       _isp_time(end)).items():
                series = result[sid]
                result[sid] = replace(series, lo=min(series.lo, start), hi=max(series.hi, end),
                                      numbers=np.concatenate([series.numbers, numbers]),
                                      values=np.concatenate([series.values, values]))
        out: dict[str, Rows] = {}
        store: dict[tuple[str, str], _KeptSeries] = {}
        for sid in ids:
            series = result[sid]
            if lo - series.lo > self.DROP_AFTER_ISPS:
                keep = series.numbers >= lo
                series = replace(series, lo=lo, numbers=series.numbers[keep], values=series.values[keep])
            if series.numbers.size > 1 and (np.diff(series.numbers) <= 0).any():
                order = np.argsort(series.numbers, kind="stable")
                series = replace(series, numbers=series.numbers[order], values=series.values[order])
            if sid in marks and series is not kept[sid]:
                store[(sid, kind)] = series
            inside = (series.numbers >= lo) & (series.numbers < hi)
            out[sid] = (series.numbers[inside], series.values[inside])
        if store:
            with self._lock:
                self._kept.setdefault(bind, {}).update(store)
        return out


SERIES_HISTORY = SeriesHistoryCache()


def _isp_time(number: int) -> datetime:
    return datetime.fromtimestamp(number * ISP_S, UTC)


# ----------------------------------------------------------------------------------------- forecasts


# A site's cars are planned to be done this many ISPs before departure (the dispatcher's finish margin).
SITE_FINISH_MARGIN_ISPS = 1
# The ISPs of a day before tried for a missing one, nearest first (within about an hour).
NEAREST_ISPS = (0, -1, 1, -2, 2, -3, 3)


def history_window(horizon: IspHorizon) -> tuple[int, int]:
    """The ISP numbers ``[lo, hi)`` a forecast over ``horizon`` looks at: the week before to its end."""
    return (_isp_number_at_or_after(horizon.start - timedelta(days=HISTORY_DAYS)),
            _isp_number_at_or_after(horizon.end))


def series_forecast(db: Session, site_id: str, kind: str, horizon: IspHorizon, tz: str, *,
                    history: Rows | None = None) -> FloatArray:
    """kW per ISP of the horizon: stated values where there are some, else the latest of the seven days before
    at the same local time (or, where that day lacks it, its nearest ISP within about an hour), else 0.

    Called for every equipped site on every re-plan, so the walk is one numpy lookup: each ISP's candidates (itself,
    then per day back its nearest ISPs in ``NEAREST_ISPS`` order) are ISP numbers found in the sorted numbers of the
    ISPs read, the first one found wins. The same local time on the days before is a pure function of the ISP and
    the zone, kept in ``_same_time_days_before`` across re-plans; the rows are kept too (``SERIES_HISTORY``: only
    what was written since the last re-plan is read). ``history``: the site's rows over ``history_window`` when
    the caller read them for many sites at once."""
    def lookup(numbers: IntArray, values: FloatArray, wanted: IntArray) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """Whether each wanted ISP number was read, and its value (0 where not)."""
        if numbers.size == 0:
            return np.zeros(wanted.shape, bool), np.zeros(wanted.shape)
        order = np.argsort(numbers)
        numbers, values = numbers[order], values[order]
        at = np.minimum(np.searchsorted(numbers, wanted), numbers.size - 1)
        return numbers[at] == wanted, values[at]

    first = int(horizon.start.timestamp()) // ISP_S
    isps = first + np.arange(horizon.count, dtype=np.int64)
    # The week before to the horizon's end, kept between re-plans (``SERIES_HISTORY``); the ISPs of the two days
    # before and the horizon first: the older days count only when some ISP finds no value within them.
    recent = _isp_number_at_or_after(horizon.start - timedelta(days=2))
    if history is None:
        oldest, end = history_window(horizon)
        history = SERIES_HISTORY.rows(db, [site_id], kind, oldest, end)[site_id]
    all_numbers, all_values = history
    near = all_numbers >= recent
    numbers, values = all_numbers[near], all_values[near]
    found, _ = lookup(numbers, values, isps[:, None] - np.asarray([0, 1, 2], dtype=np.int64) * ISPS_PER_DAY)
    if not found.any(axis=1).all():
        numbers, values = all_numbers, all_values
    found, value = lookup(numbers, values, _candidates(horizon.start, horizon.count, tz))
    pick = np.argmax(found, axis=1)
    chosen = value[np.arange(horizon.count), pick]
    return np.where(found.any(axis=1), chosen, 0.0).astype(np.float64)


@lru_cache(maxsize=64)
def _candidates(start: datetime, count: int, tz: str) -> IntArray:
    """Per ISP of the horizon, its candidates in the walk's order: the ISP itself, then each day back its nearest
    ISPs (read-only: the same for every site of a re-plan)."""
    isps = int(start.timestamp()) // ISP_S + np.arange(count, dtype=np.int64)
    before = np.asarray([_same_time_days_before(start + ISP * k, tz) for k in range(count)],
                        dtype=np.int64).reshape(count, HISTORY_DAYS)
    out = np.concatenate(
        [isps[:, None], (before[:, :, None] + np.asarray(NEAREST_ISPS, dtype=np.int64)).reshape(count, -1)], axis=1)
    out.setflags(write=False)
    return out


def _isp_number_at_or_after(at: datetime) -> int:
    """The first ISP number whose start is at or after ``at``."""
    return -(-math.ceil(at.timestamp()) // ISP_S)


@lru_cache(maxsize=16384)
def _same_time_days_before(at: datetime, tz: str) -> tuple[int, ...]:
    """The ISP numbers (epoch seconds // ISP) of ``at``'s local time (wall clock, in ``tz``) on each of the
    ``HISTORY_DAYS`` days before, nearest first: a day across a clock change is 23 or 25 hours."""
    local = at.astimezone(ZoneInfo(tz))
    return tuple(int((local - timedelta(days=back)).astimezone(UTC).timestamp()) // ISP_S
                 for back in range(1, HISTORY_DAYS + 1))


def _signal_rows(db: Session, horizon: IspHorizon) -> list[SiteSignalRow]:
    """Every signal overlapping ``horizon`` (of any site or zone)."""
    return list(db.scalars(select(SiteSignalRow).where(SiteSignalRow.end_at > horizon.start,
                                                       SiteSignalRow.start_at < horizon.end)).all())


def _signals(site: Site, horizon: IspHorizon, rows: Sequence[SiteSignalRow]
             ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], float]:
    """Outage and stress masks over the horizon from the signals ``rows`` that overlap it, and the credit a kWh
    fed back earns under stress."""
    outage = np.zeros(horizon.count, bool)
    stress = np.zeros(horizon.count, bool)
    credit = 0.0
    starts = horizon.start.timestamp() + ISP.total_seconds() * np.arange(horizon.count, dtype=np.float64)
    for row in rows:
        if row.site_id not in (None, site.id) or (row.site_id is None and row.bidding_zone != site.bidding_zone):
            continue
        inside = (starts + ISP.total_seconds() > row.start_at.timestamp()) & (starts < row.end_at.timestamp())
        if row.kind == "outage":
            outage |= inside
        else:
            stress |= inside
            if row.mode == "discharge":
                credit = STRESS_DISCHARGE_CREDIT_EUR_PER_KWH
    return outage, stress, credit


@lru_cache(maxsize=256)
def _time_of_use_prices(tariff: Tariff, start: datetime, count: int) -> FloatArray:
    """A time-of-use tariff's import price per ISP from ``start`` (EUR/kWh): the same for every site with the same
    tariff and for every re-plan of the same horizon, so kept (read-only)."""
    prices = np.asarray(tariff.import_eur_per_kwh(isp_starts(start, count), []), dtype=np.float64)
    prices.setflags(write=False)
    return prices


@lru_cache(maxsize=16)
def _isp_starts(start: datetime, count: int) -> tuple[datetime, ...]:
    """``isp_starts``, kept: every site of a re-plan has the same horizon."""
    return tuple(isp_starts(start, count))


# ----------------------------------------------------------------------------------------- planning


def site_problem(db: Session, site: Site, equipment: SiteEquipment, horizon: IspHorizon, spot_eur_per_mwh: FloatArray,
                 at: datetime, tz: str, cars: Mapping[str, Any] | None = None, *,
                 signals: Sequence[SiteSignalRow] | None = None,
                 history: Mapping[str, Rows | None] | None = None) -> SiteProblem:
    """The site's problem over ``horizon``: forecasts, tariff prices, limits, signals, battery and ``cars``.

    ``signals``: the signal rows overlapping ``horizon`` when the caller read them once for many sites;
    ``history``: the site's PV and load rows over ``history_window`` (by kind), likewise."""
    t = horizon.count
    isps = _isp_starts(horizon.start, t)
    spot = np.asarray(spot_eur_per_mwh, dtype=np.float64).tolist()
    tariff = equipment.tariff
    if tariff is None:
        import_price = np.asarray(spot) / 1000.0
        export_price = import_price.copy()
    elif tariff.energy == "tou":
        import_price = _time_of_use_prices(tariff, horizon.start, t).copy()
        export_price = np.asarray(tariff.export_price_eur_per_kwh(isps, spot))
    else:
        import_price = np.asarray(tariff.import_eur_per_kwh(isps, spot))
        export_price = np.asarray(tariff.export_price_eur_per_kwh(isps, spot))
    history = history or {}
    pv = (series_forecast(db, site.id, "pv", horizon, tz, history=history.get("pv")) if equipment.pv_kwp > 0
          else np.zeros(t))
    load = series_forecast(db, site.id, "load", horizon, tz, history=history.get("load"))
    outage, stress, credit = _signals(site, horizon, _signal_rows(db, horizon) if signals is None else signals)
    bucket = None
    so_far = None
    rate = tariff.capacity_eur_per_kw if tariff is not None else 0.0
    if tariff is not None and rate > 0:
        keys = [tariff.capacity_bucket(x) for x in isps]
        order = {key: n for n, key in enumerate(dict.fromkeys(keys))}
        bucket = np.asarray([order[key] for key in keys], dtype=np.int64)
        so_far = np.zeros(len(order))
        so_far[0] = paid_peak_kw(db, site.id, tariff, horizon.start)
    empty = np.zeros(0)
    cars = cars or {}
    return SiteProblem(
        isp_hours=ISP_H, import_eur_per_kwh=import_price, export_eur_per_kwh=export_price, pv_kw=pv, load_kw=load,
        import_max_kw=np.full(t, equipment.connection.import_limit_kw),
        export_max_kw=np.full(t, equipment.connection.export_limit_kw),
        arrival=np.asarray(cars.get("arrival", np.zeros(0, np.int64)), dtype=np.int64),
        departure=np.asarray(cars.get("departure", np.zeros(0, np.int64)), dtype=np.int64),
        energy_kwh=np.asarray(cars.get("energy_kwh", empty), dtype=np.float64),
        max_kw=np.asarray(cars.get("max_kw", empty), dtype=np.float64),
        discharge_kw=np.asarray(cars.get("discharge_kw", empty), dtype=np.float64),
        car_battery_kwh=np.asarray(cars.get("battery_kwh", empty), dtype=np.float64),
        car_soc_kwh=np.asarray(cars.get("soc_kwh", empty), dtype=np.float64),
        car_min_soc_kwh=np.asarray(cars.get("min_soc_kwh", empty), dtype=np.float64),
        battery=equipment.battery, capacity_eur_per_kw=rate, peak_bucket=bucket, peak_so_far_kw=so_far,
        v2g_cycle_eur_per_kwh=tariff.v2g_cycle_eur_per_kwh if tariff is not None else 0.0,
        outage=outage, stress=stress, stress_credit_eur_per_kwh=credit,
        car_ids=tuple(cars.get("ids", ())))


def paid_peak_kw(db: Session, site_id: str, tariff: Tariff, start: datetime) -> float:
    """The highest import metered before ``start`` in the capacity tariff's billing bucket of ``start`` (kW; 0
    when none): import up to it is already paid for."""
    key = tariff.capacity_bucket(start)
    metered = db.execute(select(SiteSeriesRow.isp_start, SiteSeriesRow.power_kw).where(
        SiteSeriesRow.site_id == site_id, SiteSeriesRow.kind == "import",
        SiteSeriesRow.isp_start >= start - timedelta(days=31), SiteSeriesRow.isp_start < start))
    return max((float(kw) for ts, kw in metered if tariff.capacity_bucket(ts) == key), default=0.0)


def capacity_import_caps_kw(db: Session, at: datetime, sites: Mapping[str, tuple[Site, SiteEquipment]]
                            ) -> dict[str, float]:
    """Import each site with a capacity tariff may take in the ISP of ``at`` without raising its bill (site pool
    -> kW): the month's (or day's) peak already paid for, or its stored plan's import now where the plan chose
    to raise it. The dispatcher holds the site's cars under it as far as their needs allow."""
    isp = floor_to_isp(_utc(at))
    out: dict[str, float] = {}
    for pool, (site, equipment) in sites.items():
        tariff = equipment.tariff
        if tariff is None or tariff.capacity_eur_per_kw <= 0:
            continue
        cap = paid_peak_kw(db, site.id, tariff, isp)
        row = db.get(SitePlanRow, site.id)
        if row is not None and row.import_kw:
            k = int((isp - _utc(row.start)).total_seconds() // ISP.total_seconds())
            if 0 <= k < len(row.import_kw):
                cap = max(cap, float(row.import_kw[k]))
        out[pool] = cap
    return out


def store_site_plan(db: Session, site_id: str, at: datetime, start: datetime, plan: SitePlan) -> SitePlanRow:
    """Replace the site's stored plan."""
    row = db.get(SitePlanRow, site_id)
    if row is None:
        row = SitePlanRow(site_id=site_id)
        db.add(row)
    for name, value in _site_plan_values(at, start, plan).items():
        setattr(row, name, value)
    db.flush()
    return row


def store_site_plans(db: Session, at: datetime, start: datetime, plans: Mapping[str, SitePlan]) -> None:
    """Replace the stored plans of many sites (site id -> plan): one UPDATE by primary key for the sites with a
    stored plan, one INSERT for the others. No row is read (each holds six JSON arrays over the horizon), so rows of
    these sites already in ``db``'s identity map are not refreshed: callers that hold them must not use them after."""
    if not plans:
        return
    have = set(db.scalars(select(SitePlanRow.site_id).where(SitePlanRow.site_id.in_(list(plans)))))
    values = [{"site_id": site_id, **_site_plan_values(at, start, plan)} for site_id, plan in plans.items()]
    changed = [row for row in values if row["site_id"] in have]
    if changed:
        db.execute(update(SitePlanRow), changed)
    new = [row for row in values if row["site_id"] not in have]
    if new:
        db.execute(insert(SitePlanRow), new)


def _site_plan_values(at: datetime, start: datetime, plan: SitePlan) -> dict[str, Any]:
    """A stored plan's columns but the site id."""
    import_kw = _rounded(plan.import_kw)
    return {"planned_at": at, "start": start, "battery_kw": _rounded(plan.battery_kw),
            "battery_soc_kwh": _rounded(plan.battery_soc_kwh), "import_kw": import_kw,
            "export_kw": _rounded(plan.export_kw),
            "cars_kw": _rounded(plan.car_kw.sum(axis=0)) if plan.car_kw.size else [0.0] * len(import_kw),
            "bill_eur": {k: round(v, 4) for k, v in plan.bill_eur.items()}, "status": plan.status}


def _rounded(values: FloatArray) -> list[float]:
    # ``tolist`` hands back the same Python floats as ``float(v)`` each, without a numpy scalar per value.
    return [round(v, 4) for v in np.asarray(values, dtype=np.float64).tolist()]


def equipped_sites(db: Session) -> dict[str, tuple[Site, SiteEquipment]]:
    """Every site with equipment the site planner must see, by site pool id."""
    rows = db.execute(select(Site, SiteEquipmentRow).join(SiteEquipmentRow, SiteEquipmentRow.site_id == Site.id))
    out = {}
    for site, row in rows:
        equipment = equipment_of(row)
        if equipment.behind_the_meter:
            out[f"site:{site.id}"] = (site, equipment)
    return out


def plan_sites(db: Session, fleet: Fleet, at: datetime, horizon: IspHorizon, problem: PlanProblem, plan: Plan,
               tz: str, *, sites: Mapping[str, tuple[Site, SiteEquipment]] | None = None) -> Plan:
    """The pool's plan with the cars of each equipped site planned by their site (see the module docstring).

    ``sites``: ``equipped_sites`` when the caller read them already."""
    sites = equipped_sites(db) if sites is None else sites
    if not sites or not plan.session_ids:
        return plan
    s = problem.sessions
    row_of = {sid: k for k, sid in enumerate(s.session_ids)}
    fleet_row = {sid: k for k, sid in enumerate(fleet.session_ids)}
    plan_row = {sid: k for k, sid in enumerate(plan.session_ids)}
    schedule = plan.schedule_kw.copy()
    by_site: dict[str, list[str]] = {}
    for sid in plan.session_ids:
        pool = fleet.site_pool[fleet_row[sid]]
        if pool in sites:
            by_site.setdefault(pool, []).append(sid)
    if not by_site:
        return plan
    # Read once for all the sites: the signals over the horizon.
    signals = _signal_rows(db, horizon)
    # And their PV and load history, read together (what changed since the last re-plan: ``SERIES_HISTORY``).
    lo, hi = history_window(horizon)
    pv = SERIES_HISTORY.rows(db, [sites[pool][0].id for pool in by_site if sites[pool][1].pv_kwp > 0], "pv", lo, hi)
    load = SERIES_HISTORY.rows(db, [sites[pool][0].id for pool in by_site], "load", lo, hi)
    problems: list[SiteProblem] = []
    for pool, ids in by_site.items():
        site, equipment = sites[pool]
        rows = np.asarray([row_of[sid] for sid in ids], dtype=np.int64)
        discharge = np.maximum(-s.min_kw[rows], 0.0)
        # Under a capacity tariff, planned as the dispatcher can follow: done a finish margin before departure, at
        # what its need floors count on a car drawing (``PLAN_FLOOR_DERATE`` of its full power); a car planned just
        # in time at its charger's maximum is held above its plan by its laxity floor, and above the site's paid
        # peak with it. Elsewhere that pull ahead costs less than planning every car so (paris-home).
        max_kw, departure = s.max_kw[rows], s.departure[rows]
        if equipment.tariff is not None and equipment.tariff.capacity_eur_per_kw > 0:
            full, _ = car_power_kw(max_kw, None)
            max_kw = np.minimum(max_kw, PLAN_FLOOR_DERATE * full)
            departure = np.maximum(departure - SITE_FINISH_MARGIN_ISPS, np.minimum(s.arrival[rows] + 1, departure))
        cars = {"ids": ids, "arrival": s.arrival[rows], "departure": departure, "energy_kwh": s.energy_kwh[rows],
                "max_kw": max_kw, "discharge_kw": discharge,
                "battery_kwh": s.battery_kwh[rows] if s.battery_kwh is not None else np.full(rows.size, np.nan),
                "soc_kwh": s.soc_kwh[rows] if s.soc_kwh is not None else np.full(rows.size, np.nan),
                "min_soc_kwh": s.min_soc_kwh[rows] if s.min_soc_kwh is not None else np.full(rows.size, np.nan)}
        problems.append(site_problem(db, site, equipment, horizon, s.prices_eur_per_mwh, at, tz, cars,
                                     signals=signals, history={"pv": pv.get(site.id), "load": load[site.id]}))
    # Planned together: ties between equally priced ISPs go where the pool's other houses import least, and the
    # sites' cars together within what the pool's peak guard leaves them beside the rest of its plan.
    start = [plan.schedule_kw[[plan_row[sid] for sid in ids]].sum(axis=0) for ids in by_site.values()]
    room = s.pool_max_kw - (plan.pool_kw - np.sum(start, axis=0))
    site_plans: dict[str, SitePlan] = {}
    for (pool, ids), result in zip(by_site.items(), plan_sites_together(problems, room_kw=room, start_kw=start),
                                   strict=True):
        site_plans[sites[pool][0].id] = result
        for k, sid in enumerate(ids):
            schedule[plan_row[sid]] = result.car_kw[k]
    # Stored together once every site is planned: the write (and on SQLite the database's write lock) comes last.
    store_site_plans(db, at, horizon.start, site_plans)
    pool_kw = plan.pool_kw - plan.schedule_kw.sum(axis=0) + schedule.sum(axis=0)
    unmet = np.maximum(s.energy_kwh[[row_of[sid] for sid in plan.session_ids]] - schedule.sum(axis=1) * ISP_H, 0.0)
    return replace(plan, schedule_kw=schedule, pool_kw=pool_kw, unmet_kwh=unmet,
                   method=f"{plan.method}+sites" if "+sites" not in plan.method else plan.method)


def plan_site_now(db: Session, site_id: str, at: datetime, spot: FloatArray | None, horizon: IspHorizon,
                  tz: str) -> SitePlanRow:
    """Plan a site without its cars (its battery and PV alone) and store the plan."""
    site = _site(db, site_id)
    row = db.get(SiteEquipmentRow, site_id)
    if row is None:
        raise NotFound(f"site {site_id!r} has no equipment to plan")
    prices = np.zeros(horizon.count) if spot is None else spot
    result = plan_site(site_problem(db, site, equipment_of(row), horizon, prices, at, tz))
    return store_site_plan(db, site_id, at, horizon.start, result)


def site_horizon(at: datetime, tz: str) -> IspHorizon:
    """From now's ISP to the end of the next delivery day (what a pool plan covers at the least)."""
    start = floor_to_isp(at)
    _, end = delivery_day_bounds(delivery_day_of(at, tz) + timedelta(days=1), tz)
    return IspHorizon(start, max(1, math.ceil((end - start) / ISP)))


def site_outages(db: Session, at: datetime, hours: float = 48.0) -> dict[str, list[tuple[float, float]]]:
    """The outage windows (epoch seconds) of every site that overlap the ``hours`` from ``at``, by site pool id
    (``site:ID``): in them the site imports nothing, so its cars cannot charge and those that may discharge feed
    the house (V2H)."""
    rows = db.execute(select(SiteSignalRow.site_id, SiteSignalRow.start_at, SiteSignalRow.end_at).where(
        SiteSignalRow.kind == "outage", SiteSignalRow.start_at < at + timedelta(hours=hours),
        SiteSignalRow.end_at > at, SiteSignalRow.site_id.is_not(None)))
    out: dict[str, list[tuple[float, float]]] = {}
    for site_id, start, end in rows:
        out.setdefault(f"site:{site_id}", []).append((_utc(start).timestamp(), _utc(end).timestamp()))
    return out


def stress_signal_pools(db: Session, at: datetime, sites: Mapping[str, tuple[Site, SiteEquipment]]
                           ) -> frozenset[str]:
    """The pools of ``sites`` (``equipped_sites``) under a grid-stress signal at ``at`` (for the site or its
    bidding zone, mode ``stop`` or ``discharge``): their cars follow their plan down to their laxity floor."""
    rows = db.execute(select(SiteSignalRow.site_id, SiteSignalRow.bidding_zone).where(
        SiteSignalRow.kind == "grid_stress", SiteSignalRow.start_at <= at, SiteSignalRow.end_at > at)).all()
    if not rows:
        return frozenset()
    return frozenset(pool for pool, (site, _) in sites.items()
                     if any(sid == site.id or (sid is None and zone == site.bidding_zone) for sid, zone in rows))


def _utc(at: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo("UTC"))


def _by_site(rows: Iterable[Any]) -> dict[str, dict[datetime, float]]:
    """(site, ISP start, kW) rows by site and ISP start."""
    out: dict[str, dict[datetime, float]] = {}
    for site_id, at, kw in rows:
        out.setdefault(site_id, {})[at] = float(kw)
    return out


def behind_the_meter_loads_kw(db: Session, at: datetime,
                              sites: Mapping[str, tuple[Site, SiteEquipment]] | None = None) -> dict[str, float]:
    """For every equipped site: what the chargers share the connection with now (pool id -> kW): load minus PV
    plus the battery's planned power.

    The import limit is a hard one, so the dispatcher's figure is cautious: the higher of the load's forecast for
    this ISP (stated, else the same time on the latest of the seven days before) and its last metered ISP, the
    lower of the PV's (none under a kVA subscription: a breaker trips when PV drops within the ISP), and no more
    battery discharge than its metered state of charge gives. The dispatcher asks every cycle, so only those ISPs
    are read. ``sites``: ``equipped_sites`` when the caller read them already.
    """
    sites = equipped_sites(db) if sites is None else sites
    if not sites:
        return {}
    isp = floor_to_isp(at)
    moments = [isp - timedelta(days=back) for back in range(HISTORY_DAYS + 1)]
    last = isp - ISP
    ids = [site.id for site, _ in sites.values()]
    # A kVA subscription is a breaker: PV, which can drop within the ISP, is not counted on to keep it.
    counted_pv = [site.id for site, equipment in sites.values()
                  if equipment.pv_kwp > 0 and equipment.connection.subscription_kva is None]
    counted = set(counted_pv)
    loads = _by_site(db.execute(select(SiteLoad.site_id, SiteLoad.isp_start, SiteLoad.load_kw).where(
        SiteLoad.site_id.in_(ids), SiteLoad.isp_start.in_([*moments, last]))))
    pvs = _by_site(db.execute(select(SiteSeriesRow.site_id, SiteSeriesRow.isp_start, SiteSeriesRow.power_kw).where(
        SiteSeriesRow.site_id.in_(counted_pv), SiteSeriesRow.kind == "pv",
        SiteSeriesRow.isp_start.in_([*moments, last])))) if counted_pv else {}
    # The planned battery power of the sites with a battery (the others have none to plan), and only that column:
    # a whole row decodes five more JSON arrays of the horizon, every dispatcher cycle.
    batteries = [site.id for site, equipment in sites.values() if equipment.battery is not None]
    plans = {site_id: (start, battery_kw) for site_id, start, battery_kw in db.execute(
        select(SitePlanRow.site_id, SitePlanRow.start, SitePlanRow.battery_kw).where(
            SitePlanRow.site_id.in_(batteries)))} if batteries else {}

    def values(rows: Mapping[str, dict[datetime, float]], site_id: str) -> tuple[float, float | None]:
        found = rows.get(site_id, {})
        return next((found[m] for m in moments if m in found), 0.0), found.get(last)

    out = {}
    for pool, (site, equipment) in sites.items():
        battery = 0.0
        plan = plans.get(site.id)
        if plan is not None:
            start, battery_kw = plan
            k = int((isp - start) / ISP)
            if 0 <= k < len(battery_kw):
                battery = float(battery_kw[k])
        b = equipment.battery
        if b is not None and b.soc_kwh is not None and battery < 0:
            # No more discharge counted than its metered state of charge can give this ISP.
            battery = max(battery, -max(b.soc_kwh - b.min_soc_kwh, 0.0) * b.efficiency / ISP_H)
        load, load_last = values(loads, site.id)
        pv, pv_last = values(pvs, site.id) if site.id in counted else (0.0, None)
        out[pool] = max(load, load_last or 0.0) - min(pv, pv if pv_last is None else pv_last) + battery
    return out
