"""The HTML report of a run: one self-contained file a trader can read at a glance.

The charts are drawn in the browser by uPlot (MIT, vendored in ``static/`` with its licence, inlined into the file
so it works offline): hover shows the values, a drag zooms, a double click resets, and the time charts of the
15-minute grid zoom together. Times are the scenario's local time. The words above the charts are written from
the scenario and the run (what was simulated, what was awarded and asked for), not from the YAML's description.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from vpp.simulation.kpis import AFRR_TOLERANCE, KPI_ROWS, Series
from vpp.simulation.runner import CarTrace
from vpp.simulation.site_kpis import site_rows

ISP = timedelta(minutes=15)
STATIC = "vpp.simulation.static"
# Above this many kW a pool chart is drawn in MW.
MW_FROM_KW = 2000.0
# KPIs the lead's like-for-like KPIs add; shown when the run has them (and KPI_ROWS does not list them yet).
EXTRA_ROWS = [
    ("energy_uncontrolled_kwh", "energy uncontrolled (kWh)"),
    ("price_paid_eur_per_mwh_uncontrolled", "price paid uncontrolled (EUR/MWh)"),
    ("price_paid_eur_per_mwh", "price paid controlled (EUR/MWh)"),
    ("price_paid_eur_per_mwh_perfect_foresight", "price paid, perfect foresight (EUR/MWh)"),
    ("price_capture_pct", "price capture (% of the perfect-foresight gain)"),
    ("dayahead_imbalance_pct", "day-ahead imbalance (% of the committed energy)"),
    ("afrr_awarded_mw", "aFRR awarded (MW)"),
    ("afrr_capacity_revenue_eur", "aFRR capacity revenue (EUR)"),
    ("afrr_steps_short_of_ramp_pct", "aFRR steps short of the ramp's band (%)"),
    ("congestion_violation_isps_uncontrolled", "congestion violations uncontrolled (ISPs)"),
]
CATEGORY_WORDS = {"home": "home", "public": "public", "workplace": "workplace"}


def _finite(values: Sequence[float | None] | npt.NDArray[np.float64], digits: int = 3) -> list[float | None]:
    """JSON-ready values: rounded, NaN and None as null (JSON has no NaN)."""
    out: list[float | None] = []
    for value in values:
        out.append(None if value is None or not math.isfinite(float(value)) else round(float(value), digits))
    return out


def _column(series: Series, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A per-ISP series of the right length (NaN where the run has none)."""
    n = len(series.isp_starts)
    return values if values.size == n else np.full(n, np.nan)


def _window_isps(series: Series) -> int:
    """How many of the ISPs are the delivery period itself; the rest follow its sessions until they left.
    (``Series.window_isps`` where the run follows the sessions past the period, else all of them.)"""
    window = series.window_isps
    return window if 0 < window <= len(series.isp_starts) else len(series.isp_starts)


def _local(at: datetime, zone: ZoneInfo, pattern: str = "%H:%M") -> str:
    return at.astimezone(zone).strftime(pattern)


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _eur(value: float) -> str:
    """EUR with cents for small amounts, whole euros beyond 100."""
    return f"{value:,.2f} EUR" if abs(value) < 100 else f"{value:,.0f} EUR"


def _energy(kwh: float) -> str:
    return f"{kwh:,.1f} kWh" if abs(kwh) < 1000 else f"{kwh / 1000:,.2f} MWh"


def _power_unit(*arrays: npt.NDArray[np.float64]) -> tuple[str, float]:
    """kW, or MW when the largest value is beyond MW_FROM_KW."""
    peak = max((float(np.nanmax(np.abs(a))) for a in arrays if a.size and np.isfinite(a).any()), default=0.0)
    return ("MW", 1000.0) if peak >= MW_FROM_KW else ("kW", 1.0)


# ----------------------------------------------------------------------------------------------- money


def money_per_isp(series: Series) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per ISP, the saving (EUR) on the day-ahead market and on imbalance (see ``money_breakdown``)."""
    prices = np.nan_to_num(series.prices_eur_per_mwh)
    delivered_kwh = series.controlled_kw / 4.0
    committed = _column(series, series.committed_kw)
    committed_kwh = np.where(np.isnan(committed), delivered_kwh, committed / 4.0)
    dayahead = (series.uncontrolled_kw / 4.0 - committed_kwh) * prices / 1000.0
    imbalance = -(delivered_kwh - committed_kwh) * prices / 1000.0
    return dayahead, imbalance


def money_breakdown(kpis: dict[str, Any], series: Series) -> list[tuple[str, float]]:
    """Where the saving against uncontrolled charging came from, per market (EUR, positive = saved or earned).

    Day-ahead energy: what the uncontrolled twin pays at the day-ahead price minus what the committed schedule
    cost; imbalance: the delivered energy off the schedule, valued at the ISP's day-ahead price (the simulation
    has no imbalance price); ISPs without a commitment count as bought at the day-ahead price. The three sum to
    the KPIs' cost difference plus the aFRR capacity revenue.
    """
    dayahead, imbalance = money_per_isp(series)
    dayahead_eur, imbalance_eur = float(dayahead.sum()), float(imbalance.sum())
    afrr_eur = float(kpis.get("afrr_capacity_revenue_eur") or 0.0)
    return [("day-ahead energy", dayahead_eur), ("imbalance", imbalance_eur), ("aFRR capacity", afrr_eur),
            ("total", dayahead_eur + imbalance_eur + afrr_eur)]


# ----------------------------------------------------------------------------------------------- words


def describe(kpis: dict[str, Any], series: Series, zone: ZoneInfo, scenario: dict[str, Any]) -> list[str]:
    """The scenario in sentences (HTML), from its parameters and what the run did."""
    cpos = scenario.get("cpos", [])
    parts = []
    for cpo in cpos:
        evses = int(cpo["locations"]) * int(cpo["evses_per_location"])
        where = (f"{cpo['locations']} locations &times; {cpo['evses_per_location']}"
                 if cpo["evses_per_location"] > 1 else f"{cpo['locations']} locations")
        v2g = ", V2G" if cpo.get("v2g") else ""
        parts.append(f"<b>{html.escape(cpo['party'])}</b> {CATEGORY_WORDS.get(cpo.get('category', ''), '')} "
                     f"({where}: {evses:,} EVSEs of {_num(cpo.get('evse_max_kw'), 0)} kW{v2g}, "
                     f"{_num(cpo.get('sessions_per_evse_per_day'), 1)} sessions per EVSE a day, "
                     f"{'needs stated by the app' if cpo.get('needs', 'explicit') == 'explicit' else 'needs learned'})")
    sharing = scenario.get("car_sharing")
    if sharing:
        parts.append(f"<b>{html.escape(sharing['party'])}</b> car sharing ({sharing['cars']} shared cars on "
                     f"{_num(sharing.get('evse_max_kw'), 0)} kW{', V2G' if sharing.get('v2g') else ''}, "
                     f"{_num(sharing.get('bookings_per_car_per_day'), 1)} bookings per car a day)")
    who = (f"{len(parts)} CPO{'s' if len(parts) > 1 else ''} with {kpis.get('chargers', 0):,} chargers: "
           + "; ".join(parts) + ".")
    paragraphs = [who]

    followed = ""
    if series.isp_starts:
        window = _window_isps(series)
        first, last = series.isp_starts[0], series.isp_starts[window - 1] + ISP
        same_day = last.astimezone(zone).date() == first.astimezone(zone).date()
        until = _local(last, zone, "%H:%M" if same_day else "%A %d %B %H:%M")
        span = f"{_local(first, zone, '%A %d %B %Y %H:%M')} to {until}"
        if window < len(series.isp_starts):
            followed = (f" (its sessions followed until they left, to "
                        f"{_local(series.isp_starts[-1] + ISP, zone, '%A %d %B %H:%M')})")
    else:
        span = str(kpis.get("delivery_start", ""))
    strategy = {"smart": "smart charging", "smart+v2g": "smart charging with V2G (discharging allowed)"}.get(
        str(scenario.get("strategy")), str(scenario.get("strategy")))
    prices = scenario.get("prices")
    price_words = "the NL day-ahead prices of the day" if prices == "nl-day-ahead" else "the scenario's price curve"
    history = float(scenario.get("history_days") or 0)
    learned = f"; the forecast learns from {history:g} days of reported sessions" if history else ""
    paragraphs.append(
        f"Delivery {html.escape(span)} ({html.escape(str(zone))}){followed}: "
        f"{kpis.get('sessions_in_delivery', 0):,} sessions "
        f"plugged in, steered by {strategy} against {price_words}{learned}.")

    markets = []
    committed = _column(series, series.committed_kw)
    if not scenario.get("dayahead", True):
        markets.append("No day-ahead schedule is bought: the energy is valued at the day-ahead price.")
    elif np.isfinite(committed).any():
        committed_kwh = float(np.nansum(committed)) / 4.0
        delivered_kwh = float(np.sum(series.controlled_kw[np.isfinite(committed)])) / 4.0
        markets.append(f"Day-ahead: the aggregator bought a schedule of {_energy(committed_kwh)} and delivered "
                       f"{_energy(delivered_kwh)} in the same ISPs.")
    else:
        markets.append("Day-ahead: a schedule was bought (the run recorded no commitment to show).")
    afrr = scenario.get("afrr") or {}
    if afrr.get("enabled"):
        direction = afrr.get("direction", "up")
        sense = "less consumption" if direction == "up" else "more consumption"
        windows = ", ".join(f"{a}&ndash;{b}" for a, b in afrr.get("activations", []))
        award = float(kpis.get("afrr_awarded_mw") or 0.0)
        offered = float(kpis.get("afrr_offered_mw") or 0.0)
        text = (f"aFRR {direction} ({sense}): {offered:g} MW offered, {award:g} MW awarded in the products holding "
                f"the activation window{'s' if len(afrr.get('activations', [])) > 1 else ''} {windows}")
        if award:
            text += f", earning {_eur(float(kpis.get('afrr_capacity_revenue_eur') or 0.0))} of capacity"
        asked = np.flatnonzero(np.abs(series.afrr_setpoint_mw) > 1e-9)
        if asked.size:
            low, high = series.afrr_at[int(asked[0])], series.afrr_at[int(asked[-1])] + timedelta(seconds=4)
            text += (f"; the TSO asked for up to {float(np.max(np.abs(series.afrr_setpoint_mw))):g} MW every 4 s from "
                     f"{_local(low, zone, '%H:%M:%S')} to {_local(high, zone, '%H:%M:%S')} "
                     f"({afrr.get('setpoint_shape', 'flat')} shape)")
        elif not award:
            text += "; with nothing awarded the intake clipped every setpoint to 0"
        markets.append(text + ".")
    else:
        markets.append("No aFRR in this scenario.")
    paragraphs.append(" ".join(markets))

    grid = []
    for spec in scenario.get("congestion", []):
        point = str(spec["congestion_point"])
        members = ", ".join(spec.get("cpos", []))
        if spec.get("signal") == "curtailment":
            grid.append(f"a &sect;14a curtailment of every device of {html.escape(members)} (point "
                        f"{html.escape(point)}) to {_num(spec.get('max_kw_per_device'), 1)} kW from "
                        f"{spec['start']} to {spec['end']}")
            continue
        limits = series.point_limit_kw.get(point)
        cap = float(np.nanmin(limits)) if limits is not None and np.isfinite(limits).any() else spec.get("max_kw")
        share = spec.get("max_share_of_peak", 0.6)
        how = "" if spec.get("max_kw") is not None else f" ({100 * share:g} % of its expected uncontrolled peak)"
        grid.append(f"a DSO limit of {_num(cap, 1)} kW{how} on point {html.escape(point)} "
                    f"({html.escape(members)}) from {spec['start']} to {spec['end']}")
    paragraphs.append(("Grid: " + "; ".join(grid) + ".") if grid else "No congestion events.")
    return paragraphs


def _headline(kpis: dict[str, Any], money: list[tuple[str, float]]) -> str:
    """A row of the few numbers a trader looks for first."""
    paid = kpis.get("price_paid_eur_per_mwh", kpis.get("avg_price_eur_per_mwh"))
    paid_unc = kpis.get("price_paid_eur_per_mwh_uncontrolled", kpis.get("avg_price_eur_per_mwh_uncontrolled"))
    perfect = kpis.get("price_paid_eur_per_mwh_perfect_foresight")
    cards = [
        ("saving", _eur(money[-1][1]), f"{_num(kpis.get('cost_saving_pct'), 1)} % of the energy cost"),
        ("price paid", f"{_num(paid, 1)} EUR/MWh", f"uncontrolled {_num(paid_unc, 1)}"
         + (f", perfect foresight {_num(perfect, 1)}" if perfect is not None else "")),
    ]
    if kpis.get("price_capture_pct") is not None:
        cards.append(("price capture", f"{_num(kpis.get('price_capture_pct'), 1)} %",
                      "of what perfect foresight gains"))
    cards += [
        ("peak", f"{_num(kpis.get('peak_kw'), 0)} kW", f"uncontrolled {_num(kpis.get('peak_kw_uncontrolled'), 0)} kW"),
        ("needs met", f"{_num(kpis.get('needs_met_pct'), 1)} %", f"of {kpis.get('sessions_feasible', 0)} feasible"),
    ]
    if kpis.get("afrr_steps_within_tolerance_pct") is not None:
        cards.append(("aFRR in band", f"{_num(kpis.get('afrr_steps_within_tolerance_pct'), 1)} %",
                      f"of {kpis.get('afrr_steps_scored', 0)} scored 4-s steps"))
    return "".join(f'<div class="card"><div class="k">{html.escape(k)}</div><div class="v">{html.escape(v)}</div>'
                   f'<div class="s">{html.escape(s)}</div></div>' for k, v, s in cards)


def _kpi_rows(kpis: dict[str, Any]) -> str:
    keys = {key for key, _ in KPI_ROWS}
    rows = list(KPI_ROWS) + [(key, label) for key, label in EXTRA_ROWS if key not in keys and key in kpis]
    return "".join(f"<tr><td>{html.escape(label)}</td><td class=\"n\">{html.escape(_num(kpis.get(key), 2))}</td></tr>"
                   for key, label in rows) + site_rows(kpis)


# ----------------------------------------------------------------------------------------------- data


def report_data(kpis: dict[str, Any], series: Series, zone: ZoneInfo,
                cars: Sequence[CarTrace] = ()) -> dict[str, Any]:
    """What the charts draw, as JSON-ready values (times in Unix seconds, the zone to show them in)."""
    isp_t = [t.timestamp() for t in series.isp_starts]
    if isp_t:
        isp_t.append(isp_t[-1] + ISP.total_seconds())  # the end of the last ISP, so that its step is drawn

    def per_isp(values: npt.NDArray[np.float64], scale: float = 1.0) -> list[float | None]:
        column = _column(series, values) / scale
        return _finite([*column, column[-1] if column.size else None], 4)

    committed = _column(series, series.committed_kw)
    perfect = _column(series, series.perfect_foresight_kw)
    unit, scale = _power_unit(series.uncontrolled_kw, series.controlled_kw, committed, perfect)
    pool: dict[str, Any] = {"unit": unit, "uncontrolled": per_isp(series.uncontrolled_kw, scale),
                            "delivered": per_isp(series.controlled_kw, scale)}
    if np.isfinite(committed).any():
        pool["committed"] = per_isp(committed, scale)
    if np.isfinite(perfect).any():
        pool["perfect"] = per_isp(perfect, scale)
    points = []
    for point, load in series.point_kw.items():
        unc = series.point_uncontrolled_kw.get(point, np.full(load.size, np.nan))
        limit = series.point_limit_kw.get(point, np.full(load.size, np.nan))
        p_unit, p_scale = _power_unit(load, unc, limit)
        points.append({"name": point, "unit": p_unit, "load": per_isp(load, p_scale),
                       "uncontrolled": per_isp(unc, p_scale), "limit": per_isp(limit, p_scale)})
    afrr: dict[str, Any] | None = None
    if series.afrr_at:
        ramped = series.afrr_ramped_mw
        band = AFRR_TOLERANCE * np.abs(ramped)
        columns = {"request": series.afrr_setpoint_mw, "ramped": ramped, "supplied": series.afrr_supplied_mw,
                   "low": ramped - band, "high": ramped + band}
        afrr = {"t": [], "tolerance_pct": round(100 * AFRR_TOLERANCE), **{key: [] for key in columns}}
        for k, at in enumerate(series.afrr_at):
            if k and (at - series.afrr_at[k - 1]).total_seconds() > 8.0:
                # Between two activation windows: a gap, not a line across the hours without setpoints.
                afrr["t"].append(series.afrr_at[k - 1].timestamp() + 4.0)
                for key in columns:
                    afrr[key].append(None)
            afrr["t"].append(at.timestamp())
            for key, values in columns.items():
                afrr[key].extend(_finite(values[k:k + 1], 4))
    car_rows = []
    for trace in cars:
        if not trace.at:
            continue
        end = trace.at[-1] + timedelta(seconds=trace.seconds[-1])
        car_rows.append({
            "title": (f"{trace.party} {trace.location_id}: plugged in {_local(trace.start, zone)}, leaves "
                      f"{_local(trace.departure, zone, '%a %H:%M')}, wants {trace.need_kwh:.1f} kWh, "
                      f"{trace.evse_max_kw:g} kW EVSE"),
            "t": [t.timestamp() for t in trace.at] + [end.timestamp()],
            "limit": _finite([*trace.limit_kw, trace.limit_kw[-1]], 2),
            "power": _finite([*trace.power_kw, trace.power_kw[-1]], 2),
            "soc": _finite([*trace.soc_pct, trace.soc_pct[-1]], 1)})
    money = money_breakdown(kpis, series)
    dayahead, imbalance = money_per_isp(series)
    cumulative = {"dayahead": _finite([0.0, *np.cumsum(dayahead)], 2),
                  "imbalance": _finite([0.0, *np.cumsum(imbalance)], 2),
                  "energy": _finite([0.0, *np.cumsum(dayahead + imbalance)], 2)}
    window = _window_isps(series)
    window_end = isp_t[window] if window < len(series.isp_starts) else None
    return {"zone": str(zone), "isp_t": isp_t, "window_end": window_end, "pool": pool,
            "price": per_isp(series.prices_eur_per_mwh), "points": points, "afrr": afrr, "cars": car_rows,
            "money": {"labels": [m[0] for m in money], "eur": [round(m[1], 2) for m in money],
                      "cumulative": cumulative}}


def _asset(name: str) -> str:
    return files(STATIC).joinpath(name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


# ----------------------------------------------------------------------------------------------- page


def render_report(kpis: dict[str, Any], series: Series, zone: ZoneInfo, scenario: dict[str, Any],
                  cars: Sequence[CarTrace] = ()) -> str:
    """The report as one HTML document: no external resources, charts drawn by the inlined uPlot."""
    data = report_data(kpis, series, zone, cars)
    money = money_breakdown(kpis, series)
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in kpis.get("notes", []))
    reference = scenario.get("reference") or {}
    ref_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in reference.items())
    description = "".join(f"<p>{p}</p>" for p in describe(kpis, series, zone, scenario))
    money_rows = "".join(f"<tr><td>{html.escape(label)}</td><td class=\"n\">{eur:,.2f}</td></tr>"
                         for label, eur in money)
    points = "".join(f'<h3>Congestion point {html.escape(p["name"])}: limit vs load</h3>'
                     f'<div class="chart" id="chart-point-{k}" data-chart="point"></div>'
                     for k, p in enumerate(data["points"]))
    afrr = ""
    if data["afrr"] is not None:
        afrr = ('<h2>aFRR: request vs supplied, per 4-s step</h2><p class="hint">MW, positive = up (less '
                f'consumption), negative = down (more). The band is &plusmn;{data["afrr"]["tolerance_pct"]} % around '
                'the request limited to the 300-s full-activation ramp; supplied = baseline minus measured pool.</p>'
                '<div class="chart" id="chart-afrr" data-chart="afrr"></div>')
    cars_html = ""
    if data["cars"]:
        cars_html = ('<h2>A sample of cars: the limit in force vs the power drawn, and the state of charge</h2>'
                     '<div class="cars">' + "".join(
                         f'<div><h4>{html.escape(c["title"])}</h4><div class="chart" id="chart-car-{k}" '
                         f'data-chart="car"></div></div>' for k, c in enumerate(data["cars"])) + "</div>")
    name = html.escape(str(kpis.get("scenario", "")))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Simulation {name}</title>
<style>{_asset("uPlot.min.css")}
{_asset("report.css")}</style></head><body>
<h1>Scenario {name}</h1>
<div class="description">{description}</div>
<div class="cards">{_headline(kpis, money)}</div>
<p class="hint">Charts: hover for values, drag to zoom (the 15-minute charts zoom together), double-click to
reset, click a legend entry to hide its line. Times in {html.escape(str(zone))}.</p>
<h2>Pool power</h2><div class="chart" id="chart-pool" data-chart="pool"></div>
<h2>Day-ahead price</h2><div class="chart" id="chart-price" data-chart="price"></div>
{afrr}
{points}
{cars_html}
<h2>The money: where the saving came from</h2>
<p class="hint">EUR against charging the same sessions uncontrolled; positive = saved or earned. Imbalance is valued
at the day-ahead price of its ISP (the simulation has no imbalance price).</p>
<div class="money"><div class="chart" id="chart-money" data-chart="money"></div>
<table><tr><th>market</th><th>saving (EUR)</th></tr>{money_rows}</table></div>
<h3>When it was saved: the energy saving summed over the period</h3>
<div class="chart" id="chart-money-time" data-chart="money-time"></div>
<h2>KPIs (controlled vs uncontrolled charging of the same sessions)</h2><table class="kpis">{_kpi_rows(kpis)}</table>
{'<h2>Pilot reference</h2><table>' + ref_rows + '</table>' if ref_rows else ''}
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
<p class="hint">Simulated in {_num(kpis.get('wall_seconds'), 0)} s; report written {generated}. Charts by uPlot
(MIT licence, &copy; Leon Sorokin), embedded below.</p>
<script id="report-data" type="application/json">{_script_json(data)}</script>
<script>/* uPlot 1.6.32, MIT licence, (c) Leon Sorokin: https://github.com/leeoniya/uPlot */
{_asset("uPlot.iife.min.js")}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""
