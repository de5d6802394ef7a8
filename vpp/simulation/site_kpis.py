"""KPIs of the sites behind the meter: PV self-consumption, renewable share of charging, grid exchange, peak
against the subscription, the bill by component and battery cycles, controlled and uncontrolled.

Both over the same ISPs, from the delivery start to the end of the run (the follow period included, as the
other like-for-like figures). The uncontrolled twin of a site has the same PV and load, its cars charging as
their uncontrolled twins do (full power from plug-in), its battery idle and no V2H in an outage.

Attribution: a car's kWh counts as renewable when the site's PV, after the building's own load, covered it in
the same ISP (PV stored in the battery and given back later is not counted: a lower bound).
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from vpp.domain.isp import ISP, floor_to_isp
from vpp.domain.sites import Tariff
from vpp.portfolio.sites import tariff_from_spec
from vpp.simulation.runner import RunResult, uncontrolled_twin
from vpp.simulation.sites import SiteState, in_window, usable_kwh

ISP_H = ISP.total_seconds() / 3600.0
BILL_COMPONENTS = ("energy", "export", "capacity", "battery_cycles", "v2g_cycles")
SUBSCRIPTION_TOLERANCE_KW = 0.1


def _twins_by_site(result: RunResult, isps: list[datetime]) -> dict[tuple[str, str], np.ndarray]:
    index = {t: k for k, t in enumerate(isps)}
    out: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(len(isps)))
    for record in result.sessions:
        if record.twin is None:
            record.twin = uncontrolled_twin(record)
        for at, kwh in record.twin:
            k = index.get(floor_to_isp(at))
            if k is not None:
                out[(record.party, record.location_id)][k] += kwh
    return out


def _prices(site: SiteState, tariff: Tariff | None, isps: list[datetime],
            spot: list[float]) -> tuple[np.ndarray, np.ndarray]:
    if tariff is None:
        values = np.asarray(spot) / 1000.0
        return values, values.copy()
    return np.asarray(tariff.import_eur_per_kwh(isps, spot)), np.asarray(tariff.export_price_eur_per_kwh(isps, spot))


def peaks_before(site: SiteState, tariff: Tariff | None, start: datetime) -> dict[tuple[int, int, int], float]:
    """The highest import (kW) the meter reported to the service before ``start``, per capacity billing period.

    The peak the site's planner takes as already reached (``peak_so_far_kw``): it is billed in the period whatever the
    delivery day does, so the controlled site, its uncontrolled twin and the house without cars all start from it.
    """
    peaks: dict[tuple[int, int, int], float] = {}
    if tariff is None or tariff.capacity_eur_per_kw <= 0:
        return peaks
    for t, row in site.isps.items():
        if t < start and row.get("hours", 0.0) > 0:
            key = tariff.capacity_bucket(t)
            peaks[key] = max(peaks.get(key, 0.0), row["import_kwh"] / row["hours"])
    return peaks


def _bill(tariff: Tariff | None, import_kwh: np.ndarray, export_kwh: np.ndarray, buy: np.ndarray, sell: np.ndarray,
          isps: list[datetime], battery_out_kwh: float, battery_cost: float, v2g_out_kwh: float,
          earlier: dict[tuple[int, int, int], float] | None = None) -> dict[str, float]:
    """The bill by component; the capacity charge is the rate times each billing period's peak (kW), the period's
    peak metered before the window (``earlier``) included: a month's tariff bills the month's peak."""
    capacity = 0.0
    if tariff is not None and tariff.capacity_eur_per_kw > 0:
        before = earlier or {}
        peaks: dict[tuple[int, int, int], float] = {}
        for t, kwh in zip(isps, import_kwh, strict=True):
            key = tariff.capacity_bucket(t)
            peaks[key] = max(peaks.get(key, before.get(key, 0.0)), kwh / ISP_H)
        capacity = tariff.capacity_eur_per_kw * sum(peaks.values())
    return {"energy": float(buy @ import_kwh), "export": -float(np.minimum(sell, buy) @ export_kwh),
            "capacity": capacity, "battery_cycles": battery_cost * battery_out_kwh,
            "v2g_cycles": (tariff.v2g_cycle_eur_per_kwh if tariff is not None else 0.0) * v2g_out_kwh}


def site_kpis(result: RunResult) -> dict[str, Any]:
    """The behind-the-meter KPIs (empty without sites)."""
    sites: list[SiteState] = result.sites
    if not sites:
        return {}
    tl = result.timeline
    start = floor_to_isp(tl.delivery_start.astimezone(UTC))
    stop = result.follow_end or tl.end.astimezone(UTC)
    isps = [start + ISP * k for k in range(max(1, int((stop - start) / ISP)))]
    spot = [result.prices.get(t, float("nan")) for t in isps]
    spot = [0.0 if v != v else v for v in spot]
    twins = _twins_by_site(result, isps)
    keys = ("pv_kwh", "pv_used_kwh", "load_kwh", "cars_kwh", "cars_out_kwh", "battery_kwh", "battery_out_kwh",
            "import_kwh", "export_kwh", "unserved_kwh")
    total: dict[str, float] = defaultdict(float)
    import_sum = np.zeros(len(isps))
    import_sum_unc = np.zeros(len(isps))
    bill: dict[str, float] = defaultdict(float)
    bill_unc: dict[str, float] = defaultdict(float)
    bill_house: dict[str, float] = defaultdict(float)
    exceeded = exceeded_unc = 0
    usable = 0.0
    for site in sites:
        rows = np.asarray([[site.isps.get(t, {}).get(key, 0.0) for key in keys] for t in isps])
        col = {key: rows[:, n] for n, key in enumerate(keys)}
        tariff = tariff_from_spec(site.spec.tariff) if site.spec.tariff else None
        buy, sell = _prices(site, tariff, isps, spot)
        before = peaks_before(site, tariff, start)
        cars_unc = twins[(site.party, site.location_id)]
        outage = np.asarray([in_window(t.astimezone(tl.zone).time(), site.spec.outages) for t in isps])
        raw = col["load_kwh"] - col["pv_kwh"] + cars_unc
        surplus = np.maximum(-raw, 0.0)
        limit_kw = site.spec.export_max_kw
        exp_unc = np.where(outage, 0.0, surplus if limit_kw is None else np.minimum(surplus, limit_kw * ISP_H))
        imp_unc = np.where(outage, 0.0, np.maximum(raw, 0.0))
        uncontrolled = {**col, "pv_used_kwh": col["pv_kwh"] - (surplus - exp_unc), "import_kwh": imp_unc,
                        "export_kwh": exp_unc, "unserved_kwh": np.where(outage, np.maximum(raw, 0.0), 0.0)}
        for name, values, cars in (("", col, col["cars_kwh"]), ("_uncontrolled", uncontrolled, cars_unc)):
            pv_for_cars = np.maximum(values["pv_used_kwh"] - values["load_kwh"], 0.0)
            total[f"pv_kwh{name}"] += float(values["pv_kwh"].sum())
            total[f"pv_self_kwh{name}"] += float(np.maximum(values["pv_used_kwh"] - values["export_kwh"], 0.0).sum())
            total[f"cars_kwh{name}"] += float(cars.sum())
            total[f"cars_pv_kwh{name}"] += float(np.minimum(cars, pv_for_cars).sum())
            total[f"import_kwh{name}"] += float(values["import_kwh"].sum())
            total[f"export_kwh{name}"] += float(values["export_kwh"].sum())
            total[f"unserved_kwh{name}"] += float(values["unserved_kwh"].sum())
        import_sum += col["import_kwh"]
        import_sum_unc += imp_unc
        battery = site.spec.battery
        for key, value in _bill(tariff, col["import_kwh"], col["export_kwh"], buy, sell, isps,
                                float(col["battery_out_kwh"].sum()),
                                battery.cycle_cost_eur_per_kwh if battery else 0.0,
                                float(col["cars_out_kwh"].sum()), before).items():
            bill[key] += value
        for key, value in _bill(tariff, imp_unc, exp_unc, buy, sell, isps, 0.0, 0.0, 0.0, before).items():
            bill_unc[key] += value
        # The same site without its cars (battery idle): what charging adds to the bill.
        house = col["load_kwh"] - col["pv_kwh"]
        house_exp = np.maximum(-house, 0.0) if limit_kw is None else np.minimum(np.maximum(-house, 0.0),
                                                                                  limit_kw * ISP_H)
        for key, value in _bill(tariff, np.where(outage, 0.0, np.maximum(house, 0.0)), np.where(outage, 0.0, house_exp),
                                buy, sell, isps, 0.0, 0.0, 0.0, before).items():
            bill_house[key] += value
        total["battery_out_kwh"] += float(col["battery_out_kwh"].sum())
        usable += usable_kwh(site.spec)
        limit = site.spec.subscription_kva or site.spec.import_max_kw
        if limit is not None:
            exceeded += int(np.sum(col["import_kwh"] / ISP_H > limit + SUBSCRIPTION_TOLERANCE_KW))
            exceeded_unc += int(np.sum(imp_unc / ISP_H > limit + SUBSCRIPTION_TOLERANCE_KW))
    limits = [s.spec.subscription_kva or s.spec.import_max_kw for s in sites]

    def pct(part: str, whole: str, name: str = "") -> float | None:
        return round(100.0 * total[part + name] / total[whole + name], 1) if total[whole + name] > 1e-6 else None

    def rounded(values: dict[str, float]) -> dict[str, float]:
        out = {key: round(values.get(key, 0.0), 2) for key in BILL_COMPONENTS}
        out["total"] = round(sum(values.get(key, 0.0) for key in BILL_COMPONENTS), 2)
        return out

    bill_total, bill_total_unc = rounded(bill), rounded(bill_unc)
    saving = (round(100.0 * (bill_total_unc["total"] - bill_total["total"]) / bill_total_unc["total"], 2)
              if bill_total_unc["total"] > 1e-6 else None)
    house = rounded(bill_house)["total"]
    charging, charging_unc = bill_total["total"] - house, bill_total_unc["total"] - house
    return {
        "sites": len(sites),
        # The pilots' "cost of charging": the site's bill minus the bill of the same site without its cars.
        "charging_cost_eur": round(charging, 2),
        "charging_cost_eur_uncontrolled": round(charging_unc, 2),
        "charging_cost_saving_pct": round(100.0 * (charging_unc - charging) / charging_unc, 2)
        if charging_unc > 1e-6 else None,
        "pv_self_consumption_pct": pct("pv_self_kwh", "pv_kwh"),
        "pv_self_consumption_pct_uncontrolled": pct("pv_self_kwh", "pv_kwh", "_uncontrolled"),
        "renewable_share_pct": pct("cars_pv_kwh", "cars_kwh"),
        "renewable_share_pct_uncontrolled": pct("cars_pv_kwh", "cars_kwh", "_uncontrolled"),
        "grid_import_kwh": round(total["import_kwh"], 1),
        "grid_import_kwh_uncontrolled": round(total["import_kwh_uncontrolled"], 1),
        "grid_export_kwh": round(total["export_kwh"], 1),
        "grid_export_kwh_uncontrolled": round(total["export_kwh_uncontrolled"], 1),
        "peak_import_kw": round(float(import_sum.max()) / ISP_H, 2),
        "peak_import_kw_uncontrolled": round(float(import_sum_unc.max()) / ISP_H, 2),
        "subscription_kw": round(sum(v for v in limits if v is not None), 2) if all(limits) else None,
        "subscription_exceeded_isps": exceeded,
        "subscription_exceeded_isps_uncontrolled": exceeded_unc,
        "bill_eur": bill_total,
        "bill_eur_uncontrolled": bill_total_unc,
        "bill_saving_pct": saving,
        "battery_cycles": round(total["battery_out_kwh"] / usable, 2) if usable > 0 else None,
        "unserved_kwh": round(total["unserved_kwh"], 2),
        "unserved_kwh_uncontrolled": round(total["unserved_kwh_uncontrolled"], 2),
    }


SITE_ROWS = [
    ("pv_self_consumption_pct", "PV self-consumption (%)"),
    ("pv_self_consumption_pct_uncontrolled", "PV self-consumption uncontrolled (%)"),
    ("renewable_share_pct", "renewable share of charging (%)"),
    ("renewable_share_pct_uncontrolled", "renewable share of charging uncontrolled (%)"),
    ("grid_import_kwh", "grid import (kWh)"),
    ("grid_import_kwh_uncontrolled", "grid import uncontrolled (kWh)"),
    ("grid_export_kwh", "grid export (kWh)"),
    ("peak_import_kw", "peak import (kW)"),
    ("peak_import_kw_uncontrolled", "peak import uncontrolled (kW)"),
    ("subscription_kw", "subscription / import limit (kW)"),
    ("subscription_exceeded_isps", "ISPs above the subscription"),
    ("bill_saving_pct", "site bill saving (%)"),
    ("charging_cost_eur_uncontrolled", "cost of charging at the site's tariff, uncontrolled (EUR)"),
    ("charging_cost_eur", "cost of charging at the site's tariff, controlled (EUR)"),
    ("charging_cost_saving_pct", "cost of charging saving (%)"),
    ("battery_cycles", "battery cycles"),
    ("unserved_kwh", "unserved load in outages (kWh)"),
]


def site_rows(kpis: dict[str, Any]) -> str:
    """The behind-the-meter KPIs as table rows of the report (nothing without sites)."""
    if "bill_eur" not in kpis:
        return ""
    rows = [(label, kpis.get(key)) for key, label in SITE_ROWS]
    for part in (*BILL_COMPONENTS, "total"):
        rows.append((f"site bill: {part} (EUR), controlled / uncontrolled",
                     f"{kpis['bill_eur'].get(part)} / {kpis['bill_eur_uncontrolled'].get(part)}"))
    return "".join(f"<tr><td>{html.escape(label)}</td><td class=\"n\">{html.escape('n/a' if v is None else str(v))}"
                   f"</td></tr>" for label, v in rows)
