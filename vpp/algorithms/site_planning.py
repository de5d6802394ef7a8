"""One site behind its meter, planned exactly: cars and a stationary battery against the site's tariff, pure.

A site is one grid connection with a building load and PV production (forecasts, kW per ISP), a battery
(``vpp.domain.sites.Battery``) and the cars plugged in there. ``plan_site`` solves one linear programme (HiGHS) over
the horizon and returns what each car and the battery should do, what the meter will see, and the bill by
component. Exact within its model:

* balance per ISP: import - export = load - (PV - curtailed) + cars (charge - discharge) + battery (charge -
  discharge) - unserved; import at most ``import_max_kw`` (the connection's limit and its kVA subscription), export
  at most ``export_max_kw``; PV may be curtailed (an export limit, negative export prices);
* cars: each charges between arrival and departure at most ``max_kw`` and needs ``energy_kwh`` net (a kWh short
  costs ``UNMET_EUR_PER_KWH``, so needs come first but an impossible one does not make the plan infeasible); a car
  with ``discharge_kw`` > 0 may feed back (V2G, V2H) and keeps its state of charge within its floor and battery;
* the battery: state of charge between its limits, ``efficiency`` lost one way on each of charging and
  discharging, ``cycle_cost_eur_per_kwh`` per kWh discharged;
* the bill: import at ``import_eur_per_kwh`` (time-of-use or dynamic), export earning ``export_eur_per_kwh``
  (at most the import price of the ISP: one meter nets the two, so both at once never pays),
  ``capacity_eur_per_kw`` on the highest import of each billing bucket (a day's or month's peak; the peak already
  reached, ``peak_so_far_kw``, is free up to itself), ``v2g_cycle_eur_per_kwh`` per kWh a car feeds back;
* signals: in ``outage`` ISPs the grid is gone (no import or export): the house runs on PV, the battery and the
  cars that may discharge (V2H), within their floors; load that cannot be served costs ``UNSERVED_EUR_PER_KWH``.
  In ``stress`` ISPs (a grid-stress signal such as Ecowatt) cars do not charge unless a need would be missed
  otherwise, and each kWh fed back earns ``stress_credit_eur_per_kwh`` on top.

Not modelled: losses of the cars' chargers, the battery's own power taper, a charge and a discharge of the
battery in the same ISP (never worth it while prices are positive: it only loses energy).
A tie between equally cheap ISPs goes to the earlier one (a tiny cost per ISP of delay), as uncontrolled charging
would have it; for sites planned together (``plan_sites_together``: one pool's houses on the same time-of-use
tariff) a larger but still small cost per kW the other sites import first (``others_import_kw``), so the houses do
not all start their cars at the first off-peak ISP.

The cars' peak guard (``cars_max_kw``): what the site's cars may draw together per ISP, the pool planner's peak guard
less what the rest of its pool plans there. A kWh above it costs ``GUARD_EUR_PER_KWH``: above any tariff's
difference between two ISPs, below a missed need, so the guard spreads the cars over the cheap hours but never
leaves a need unmet. Without it a site's LP packs its cars into the few cheapest ISPs at full power, above what the
same cars draw uncontrolled.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from vpp.algorithms.lp import solve_lp
from vpp.domain.errors import InvalidInput
from vpp.domain.sites import Battery

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

UNMET_EUR_PER_KWH = 100.0
UNSERVED_EUR_PER_KWH = 1000.0
# The stress signal stops charging: a kWh charged inside it costs this much more (below a missed need's price).
STRESS_CHARGE_EUR_PER_KWH = 10.0
# Ties between equally priced ISPs go to the earlier one.
_DELAY_EUR_PER_KWH_PER_ISP = 1e-6
# Sites planned together: a kWh imported costs this much more per kW the other sites import in its ISP (0.01 EUR/MWh
# per kW: 1 EUR/MWh at 100 kW). Ten times the delay tie-break, so 1 kW less of the others' import outweighs 10 ISPs
# of delay, and small beside any real difference between two ISPs' tariffs.
SPREAD_EUR_PER_KWH_PER_KW = 1e-5
# A kWh the site's cars draw above their peak guard (``cars_max_kw``): 1,000 EUR/MWh, above any tariff's spread
# between ISPs, a hundredth of a missed need's.
GUARD_EUR_PER_KWH = 1.0


@dataclass(frozen=True, eq=False)
class SiteProblem:
    """One site over ``n_isps`` ISPs of ``isp_hours``.

    Per ISP: prices (EUR/kWh), PV and building load forecasts (kW, >= 0), import and export limits (kW, inf for
    none), the outage and stress masks, and the capacity tariff's billing bucket (``peak_bucket``, -1: not
    billed). Per car: its window ``[arrival, departure)`` in ISPs, the net energy it needs, charge and discharge
    power, and for a car that may discharge its battery, state of charge now and floor (kWh).
    """

    isp_hours: float
    import_eur_per_kwh: FloatArray
    export_eur_per_kwh: FloatArray
    pv_kw: FloatArray
    load_kw: FloatArray
    import_max_kw: FloatArray
    export_max_kw: FloatArray
    arrival: IntArray
    departure: IntArray
    energy_kwh: FloatArray
    max_kw: FloatArray
    discharge_kw: FloatArray
    car_battery_kwh: FloatArray
    car_soc_kwh: FloatArray
    car_min_soc_kwh: FloatArray
    battery: Battery | None = None
    capacity_eur_per_kw: float = 0.0
    peak_bucket: IntArray | None = None
    peak_so_far_kw: FloatArray | None = None
    v2g_cycle_eur_per_kwh: float = 0.0
    outage: BoolArray | None = None
    stress: BoolArray | None = None
    stress_credit_eur_per_kwh: float = 0.0
    car_ids: tuple[str, ...] = ()
    # What the other sites planned with this one import per ISP (kW; None: planned alone): ties go where it is low.
    others_import_kw: FloatArray | None = None
    # The most the cars may draw together per ISP (kW, inf: unguarded; None: no guard), soft (GUARD_EUR_PER_KWH).
    cars_max_kw: FloatArray | None = None

    @property
    def n_isps(self) -> int:
        """ISPs of the horizon."""
        return int(self.import_eur_per_kwh.shape[0])

    @property
    def n_cars(self) -> int:
        """Cars plugged in or expected."""
        return int(self.arrival.shape[0])


@dataclass(frozen=True, eq=False)
class SitePlan:
    """What the site should do per ISP, what its meter sees, and its bill (EUR) by component.

    ``car_kw`` is cars x ISPs (negative: feeding back), ``battery_kw`` positive when charging. ``bill_eur``:
    ``energy`` (import), ``export`` (revenue, negative), ``capacity`` (the rise of the billed peaks above
    ``peak_so_far_kw`` times the rate), ``battery_cycles`` and ``v2g_cycles`` (wear); ``total`` their sum.
    """

    car_kw: FloatArray
    battery_kw: FloatArray
    battery_soc_kwh: FloatArray
    import_kw: FloatArray
    export_kw: FloatArray
    curtailed_kw: FloatArray
    unserved_kw: FloatArray
    unmet_kwh: FloatArray
    peak_kw: FloatArray
    bill_eur: dict[str, float] = field(default_factory=dict)
    status: str = "optimal"
    seconds: float = 0.0
    over_guard_kw: FloatArray | None = None


def _check(p: SiteProblem) -> None:
    t, n = p.n_isps, p.n_cars
    if p.isp_hours <= 0:
        raise InvalidInput("isp_hours must be positive")
    for name in ("export_eur_per_kwh", "pv_kw", "load_kw", "import_max_kw", "export_max_kw"):
        if getattr(p, name).shape != (t,):
            raise InvalidInput(f"{name} must have one value per ISP ({t})")
    for name in ("departure", "energy_kwh", "max_kw", "discharge_kw", "car_battery_kwh", "car_soc_kwh",
                 "car_min_soc_kwh"):
        if getattr(p, name).shape != (n,):
            raise InvalidInput(f"{name} must have one value per car ({n})")
    if (p.pv_kw < 0).any() or (p.load_kw < 0).any():
        raise InvalidInput("PV and load are magnitudes (>= 0)")
    if (p.arrival < 0).any() or (p.departure > t).any() or (p.arrival > p.departure).any():
        raise InvalidInput("car windows must lie within the horizon, arrival before departure")
    if (p.max_kw < 0).any() or (p.discharge_kw < 0).any():
        raise InvalidInput("car powers are magnitudes (>= 0)")
    v2g = p.discharge_kw > 0
    if v2g.any() and not (np.isfinite(p.car_battery_kwh[v2g]).all() and np.isfinite(p.car_soc_kwh[v2g]).all()):
        raise InvalidInput("a car that may discharge needs its battery and state of charge")
    for name in ("outage", "stress", "peak_bucket", "others_import_kw", "cars_max_kw"):
        value = getattr(p, name)
        if value is not None and value.shape != (t,):
            raise InvalidInput(f"{name} must have one value per ISP ({t})")
    if p.peak_bucket is not None and p.peak_so_far_kw is not None and p.peak_bucket.max(initial=-1) >= len(
            p.peak_so_far_kw):
        raise InvalidInput("peak_so_far_kw needs one value per billing bucket")


class _Columns:
    """Column blocks of the LP, by name."""

    def __init__(self) -> None:
        self.size = 0
        self.lower: list[FloatArray] = []
        self.upper: list[FloatArray] = []
        self.cost: list[FloatArray] = []

    def add(self, count: int, lower: FloatArray | float, upper: FloatArray | float,
            cost: FloatArray | float) -> IntArray:
        index = np.arange(self.size, self.size + count, dtype=np.int64)
        self.size += count
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (count,)).copy())
        return index


class _Rows:
    """Sparse rows of the LP with their bounds."""

    def __init__(self) -> None:
        self.count = 0
        self.r: list[IntArray] = []
        self.c: list[IntArray] = []
        self.v: list[FloatArray] = []
        self.lower: list[FloatArray] = []
        self.upper: list[FloatArray] = []

    def new(self, count: int, lower: FloatArray | float, upper: FloatArray | float) -> IntArray:
        index = np.arange(self.count, self.count + count, dtype=np.int64)
        self.count += count
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)).copy())
        return index

    def put(self, rows: IntArray, cols: IntArray, values: FloatArray | float) -> None:
        self.r.append(np.asarray(rows, dtype=np.int64))
        self.c.append(np.asarray(cols, dtype=np.int64))
        self.v.append(np.broadcast_to(np.asarray(values, dtype=np.float64), (len(rows),)).copy())


def plan_site(problem: SiteProblem) -> SitePlan:
    """The site's least-cost plan (see the module docstring)."""
    started = time.perf_counter()
    _check(problem)
    p = problem
    t_count, n, h = p.n_isps, p.n_cars, p.isp_hours
    outage = np.zeros(t_count, bool) if p.outage is None else p.outage.astype(bool)
    stress = np.zeros(t_count, bool) if p.stress is None else p.stress.astype(bool)
    cols, rows = _Columns(), _Rows()
    spread = 0.0 if p.others_import_kw is None else SPREAD_EUR_PER_KWH_PER_KW * np.maximum(p.others_import_kw, 0.0)
    imp = cols.add(t_count, 0.0, np.where(outage, 0.0, p.import_max_kw), (p.import_eur_per_kwh + spread) * h)
    # One meter nets import and export: an export price above the import price must not pay for both at once.
    export_price = np.minimum(p.export_eur_per_kwh, p.import_eur_per_kwh - _DELAY_EUR_PER_KWH_PER_ISP)
    exp = cols.add(t_count, 0.0, np.where(outage, 0.0, p.export_max_kw), -export_price * h)
    cur = cols.add(t_count, 0.0, p.pv_kw, 0.0)
    uns = cols.add(t_count, 0.0, np.where(outage, p.load_kw, 0.0), UNSERVED_EUR_PER_KWH * h)
    battery = p.battery
    if battery is not None:
        soc0 = battery.soc_kwh if battery.soc_kwh is not None else battery.min_soc_kwh
        soc0 = min(max(soc0, battery.min_soc_kwh), battery.upper_kwh)
        bc = cols.add(t_count, 0.0, battery.power_kw, 0.0)
        bd = cols.add(t_count, 0.0, battery.power_kw, battery.cycle_cost_eur_per_kwh * h)
        sb = cols.add(t_count, battery.min_soc_kwh, battery.upper_kwh, 0.0)
    # Car cells: one column per car and ISP of its window (charge), and for V2G cars one more (discharge).
    car_rows, car_isps = [], []
    for i in range(n):
        span = np.arange(int(p.arrival[i]), int(p.departure[i]), dtype=np.int64)
        car_rows.append(np.full(span.size, i, dtype=np.int64))
        car_isps.append(span)
    cell_car = np.concatenate(car_rows) if car_rows else np.zeros(0, np.int64)
    cell_isp = np.concatenate(car_isps) if car_isps else np.zeros(0, np.int64)
    charge_cost: FloatArray = _DELAY_EUR_PER_KWH_PER_ISP * h * cell_isp.astype(np.float64) + np.where(stress[cell_isp],
                                                                         STRESS_CHARGE_EUR_PER_KWH * h, 0.0)
    charge = cols.add(cell_car.size, 0.0, p.max_kw[cell_car] if n else 0.0, charge_cost)
    v2g_cell = p.discharge_kw[cell_car] > 0 if n else np.zeros(0, bool)
    d_car, d_isp = cell_car[v2g_cell], cell_isp[v2g_cell]
    credit = np.where(stress[d_isp], p.stress_credit_eur_per_kwh, 0.0)
    discharge = cols.add(d_car.size, 0.0, p.discharge_kw[d_car] if d_car.size else 0.0,
                         (p.v2g_cycle_eur_per_kwh - credit) * h)
    unmet = cols.add(n, 0.0, np.inf, UNMET_EUR_PER_KWH)
    # Balance: imp - exp - cur - bc + bd - sum(charge) + sum(discharge) + uns = load - pv.
    balance = rows.new(t_count, p.load_kw - p.pv_kw, p.load_kw - p.pv_kw)
    rows.put(balance, imp, 1.0)
    rows.put(balance, exp, -1.0)
    rows.put(balance, cur, -1.0)
    rows.put(balance, uns, 1.0)
    rows.put(balance[cell_isp], charge, -1.0)
    rows.put(balance[d_isp], discharge, 1.0)
    if battery is not None:
        rows.put(balance, bc, -1.0)
        rows.put(balance, bd, 1.0)
        # sb_t - sb_(t-1) - h eff bc_t + h / eff bd_t = 0, sb_(-1) = soc0.
        dynamics = rows.new(t_count, np.r_[soc0, np.zeros(t_count - 1)], np.r_[soc0, np.zeros(t_count - 1)])
        rows.put(dynamics, sb, 1.0)
        rows.put(dynamics[1:], sb[:-1], -1.0)
        rows.put(dynamics, bc, -h * battery.efficiency)
        rows.put(dynamics, bd, h / battery.efficiency)
    # Needs: h * sum(charge - discharge) + unmet >= energy; a charge-only car takes no more than its need.
    v2g_car = p.discharge_kw > 0
    room = np.where(v2g_car, np.nan_to_num(p.car_battery_kwh - p.car_soc_kwh, nan=np.inf),
                    np.maximum(p.energy_kwh, 0.0))
    needs = rows.new(n, p.energy_kwh, np.maximum(room, p.energy_kwh))
    rows.put(needs[cell_car], charge, h)
    rows.put(needs[d_car], discharge, -h)
    rows.put(needs, unmet, 1.0)
    # A V2G car's state of charge after each ISP of its window stays within [floor, battery].
    for car in np.flatnonzero(v2g_car):
        i = int(car)
        mine = np.flatnonzero(cell_car == i)
        mine_d = np.flatnonzero(d_car == i)
        k = int(mine.size)
        if k == 0:
            continue
        soc0_car = float(p.car_soc_kwh[i])
        floor = float(np.nan_to_num(p.car_min_soc_kwh[i], nan=0.0))
        # SoC after each cell: s_j - s_(j-1) - h c_j + h d_j = 0 (s_(-1) = soc now), within [floor, battery].
        soc = cols.add(k, min(floor, soc0_car), float(p.car_battery_kwh[i]), 0.0)
        rhs = np.r_[soc0_car, np.zeros(k - 1)]
        soc_rows = rows.new(k, rhs, rhs)
        rows.put(soc_rows, soc, 1.0)
        rows.put(soc_rows[1:], soc[:-1], -1.0)
        rows.put(soc_rows, charge[mine], -h)
        rows.put(soc_rows, discharge[mine_d], h)
    # Capacity tariff: peak_b >= import_t for every billed ISP of bucket b, and >= the peak already reached.
    buckets = 0 if p.peak_bucket is None or p.capacity_eur_per_kw <= 0 else int(p.peak_bucket.max(initial=-1)) + 1
    so_far = np.zeros(buckets)
    if buckets:
        assert p.peak_bucket is not None
        if p.peak_so_far_kw is not None:
            so_far = np.maximum(np.asarray(p.peak_so_far_kw[:buckets], dtype=np.float64), 0.0)
        peak = cols.add(buckets, so_far, np.inf, p.capacity_eur_per_kw)
        billed = np.flatnonzero(p.peak_bucket >= 0)
        peak_rows = rows.new(billed.size, 0.0, np.inf)
        rows.put(peak_rows, peak[p.peak_bucket[billed]], 1.0)
        rows.put(peak_rows, imp[billed], -1.0)
    # The cars' peak guard: sum(charge - discharge) - over <= cars_max_kw where it is finite.
    guarded = np.zeros(0, np.int64) if p.cars_max_kw is None else np.flatnonzero(np.isfinite(p.cars_max_kw))
    if guarded.size:
        assert p.cars_max_kw is not None
        over = cols.add(guarded.size, 0.0, np.inf, GUARD_EUR_PER_KWH * h)
        slot = np.full(t_count, -1, dtype=np.int64)
        slot[guarded] = np.arange(guarded.size)
        guard_rows = rows.new(guarded.size, -np.inf, p.cars_max_kw[guarded])
        rows.put(guard_rows, over, -1.0)
        c_in, d_in = slot[cell_isp] >= 0, slot[d_isp] >= 0
        rows.put(guard_rows[slot[cell_isp[c_in]]], charge[c_in], 1.0)
        rows.put(guard_rows[slot[d_isp[d_in]]], discharge[d_in], -1.0)
    values, status = _solve(cols, rows)
    if values is None:
        raise InvalidInput(f"the site's plan could not be solved ({status})")
    car_kw = np.zeros((n, t_count))
    np.add.at(car_kw, (cell_car, cell_isp), values[charge])
    np.subtract.at(car_kw, (d_car, d_isp), values[discharge])
    bat_kw = values[bc] - values[bd] if battery is not None else np.zeros(t_count)
    bat_soc = values[sb] if battery is not None else np.zeros(t_count)
    imp_kw, exp_kw = values[imp], values[exp]
    peaks = values[peak] if buckets else np.zeros(0)
    bill = {
        "energy": float(p.import_eur_per_kwh @ imp_kw) * h,
        "export": -float(export_price @ exp_kw) * h,
        "capacity": float(p.capacity_eur_per_kw * (peaks - so_far).sum()) if buckets else 0.0,
        "battery_cycles": float(battery.cycle_cost_eur_per_kwh * values[bd].sum() * h) if battery is not None
        else 0.0,
        "v2g_cycles": float(p.v2g_cycle_eur_per_kwh * values[discharge].sum() * h),
    }
    bill["total"] = sum(bill.values())
    over_guard = None
    if guarded.size:
        over_guard = np.zeros(t_count)
        over_guard[guarded] = values[over]
    return SitePlan(car_kw=car_kw, battery_kw=bat_kw, battery_soc_kwh=bat_soc, import_kw=imp_kw, export_kw=exp_kw,
                    curtailed_kw=values[cur], unserved_kw=values[uns], unmet_kwh=values[unmet], peak_kw=peaks,
                    bill_eur=bill, status=status, seconds=time.perf_counter() - started,
                    over_guard_kw=over_guard)


def plan_sites_together(problems: Sequence[SiteProblem], *, room_kw: FloatArray | None = None,
                        start_kw: Sequence[FloatArray] | None = None) -> list[SitePlan]:
    """Sites of one pool planned one after the other, each seeing what the others import (``others_import_kw``).

    Each house planned alone puts its cars in the first ISP of its cheap period (the tie-break towards the earlier
    ISP), so on a time-of-use tariff every house starts at once when the off-peak period begins, and the houses
    together draw above what their cars drew uncontrolled, spread over their arrivals (paris-home: 107 kW against
    77 kW at 22:00). Here a site not planned yet counts at its load less its PV (at least 0: its import without
    cars or battery), one planned already at its planned import; ties then go to the ISPs where the others import
    least, which fills the valleys of the pool's summed import. A site's own cost changes by at most the tie-break
    (``SPREAD_EUR_PER_KWH_PER_KW``). Sites of different horizons are planned alone.

    ``room_kw``: what the pool's peak guard leaves per ISP for the cars of all these sites together (the guard less
    what the rest of the pool plans); ``start_kw``: each site's cars as the pool's plan put them (their sum per
    ISP), which fits the room. Site k's cars are then guarded (``cars_max_kw``) at the room less the other sites'
    cars, planned already at their site plan, not yet at their start: each site swaps its share of a plan that fits
    the guard for its own, so the sites' cars together stay within the guard as far as their needs allow.
    """
    if not problems or len({p.n_isps for p in problems}) > 1:
        return [plan_site(p) for p in problems]
    guarded = room_kw is not None and start_kw is not None
    cars = [np.asarray(kw, dtype=np.float64) for kw in start_kw] if guarded and start_kw is not None else []
    alone = len(problems) < 2
    own = [np.maximum(p.load_kw - p.pv_kw, 0.0) for p in problems]
    total = np.sum(own, axis=0)
    plans: list[SitePlan] = []
    for k, p in enumerate(problems):
        if guarded:
            assert room_kw is not None
            others = np.sum(cars, axis=0) - cars[k]
            p = replace(p, cars_max_kw=np.where(np.isfinite(room_kw), np.maximum(room_kw - others, 0.0), np.inf))
        plan = plan_site(p if alone else replace(p, others_import_kw=total - own[k]))
        total = total - own[k] + plan.import_kw
        own[k] = plan.import_kw
        if guarded:
            cars[k] = plan.car_kw.sum(axis=0) if plan.car_kw.size else np.zeros(p.n_isps)
        plans.append(plan)
    return plans


def _solve(cols: _Columns, rows: _Rows) -> tuple[FloatArray | None, str]:
    n_cols, n_rows = cols.size, rows.count
    r = np.concatenate(rows.r) if rows.r else np.zeros(0, np.int64)
    c = np.concatenate(rows.c) if rows.c else np.zeros(0, np.int64)
    v = np.concatenate(rows.v) if rows.v else np.zeros(0)
    matrix = sparse.csc_matrix((v, (r, c)), shape=(n_rows, n_cols))
    return solve_lp(np.concatenate(cols.cost), np.concatenate(cols.lower), np.concatenate(cols.upper), matrix,
                    np.concatenate(rows.lower) if rows.lower else np.zeros(0),
                    np.concatenate(rows.upper) if rows.upper else np.zeros(0))


def unplanned_site(isp_count: int) -> SiteProblem:
    """An empty site of ``isp_count`` ISPs (no cars, no load, free exchange): a base for tests and callers."""
    zeros = np.zeros(isp_count)
    none = np.zeros(0)
    return SiteProblem(isp_hours=0.25, import_eur_per_kwh=zeros.copy(), export_eur_per_kwh=zeros.copy(),
                       pv_kw=zeros.copy(), load_kw=zeros.copy(), import_max_kw=np.full(isp_count, np.inf),
                       export_max_kw=np.full(isp_count, np.inf), arrival=np.zeros(0, np.int64),
                       departure=np.zeros(0, np.int64), energy_kwh=none, max_kw=none, discharge_kw=none,
                       car_battery_kwh=none, car_soc_kwh=none, car_min_soc_kwh=none)
