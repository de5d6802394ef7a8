"""A self-contained HTML report of a run: the KPI table and inline SVG plots of the delivery period."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from vpp.simulation.kpis import KPI_ROWS, Series

WIDTH, HEIGHT, PAD = 760, 240, 48
COLOURS = ("#888888", "#1f77b4", "#d62728", "#2ca02c")


def _path(xs: Sequence[float], ys: Sequence[float], x0: float, x1: float, y0: float, y1: float,
          step: bool) -> str:
    points: list[str] = []
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y is None or (isinstance(y, float) and math.isnan(y)):
            continue
        px = PAD + (x - x0) / (x1 - x0 or 1) * (WIDTH - 2 * PAD)
        py = HEIGHT - PAD - (y - y0) / (y1 - y0 or 1) * (HEIGHT - 2 * PAD)
        if step and points and k + 1 < len(xs):
            points.append(f"{px:.1f},{points[-1].split(',')[1]}")
        points.append(f"{px:.1f},{py:.1f}")
    return " ".join(points)


def line_chart(title: str, times: Sequence[datetime], series: dict[str, Sequence[float]], unit: str,
               zone: ZoneInfo, *, step: bool = True) -> str:
    """An SVG line chart of several series over the same times."""
    if not times:
        return f"<p>{html.escape(title)}: no data</p>"
    xs = [t.timestamp() for t in times]
    values = [v for ys in series.values() for v in ys if v is not None and not math.isnan(v)]
    y0 = min(0.0, min(values, default=0.0))
    y1 = max(values, default=1.0)
    y1 = y1 + 0.05 * (y1 - y0 or 1)
    x0, x1 = xs[0], xs[-1]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
             f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>']
    for k in range(5):
        value = y0 + (y1 - y0) * k / 4
        y = HEIGHT - PAD - k / 4 * (HEIGHT - 2 * PAD)
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    for k in range(7):
        x = x0 + (x1 - x0) * k / 6
        px = PAD + k / 6 * (WIDTH - 2 * PAD)
        label = datetime.fromtimestamp(x, zone).strftime("%d %H:%M")
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="10" y="{PAD - 8}">{html.escape(unit)}</text>')
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'points="{_path(xs, list(ys), x0, x1, y0, y1, step)}"/>')
        parts.append(f'<text x="{WIDTH - PAD - 200}" y="{PAD - 20 + 14 * k}" fill="{colour}">'
                     f'&#9632; {html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_report(kpis: dict[str, Any], series: Series, zone: ZoneInfo, scenario: dict[str, Any]) -> str:
    """The report as one HTML document (no external resources)."""
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(str(kpis.get(key)))}</td></tr>"
                   for key, label in KPI_ROWS)
    charts = [
        line_chart("Pool power: uncontrolled vs controlled (ISP average)", series.isp_starts,
                   {"uncontrolled": series.uncontrolled_kw.tolist(), "controlled": series.controlled_kw.tolist()},
                   "kW", zone),
        line_chart("Day-ahead price", series.isp_starts, {"price": series.prices_eur_per_mwh.tolist()},
                   "EUR/MWh", zone),
    ]
    if series.afrr_at:
        charts.append(line_chart(
            "aFRR: setpoint (applied), ramp-limited setpoint and supplied response per 4-s step", series.afrr_at,
            {"setpoint": series.afrr_setpoint_mw.tolist(), "ramped": series.afrr_ramped_mw.tolist(),
             "supplied": np.nan_to_num(series.afrr_supplied_mw, nan=np.nan).tolist()}, "MW", zone))
    for point in series.point_kw:
        charts.append(line_chart(
            f"Congestion point {point}: limit vs load", series.isp_starts,
            {"uncontrolled": series.point_uncontrolled_kw[point].tolist(), "load": series.point_kw[point].tolist(),
             "limit": series.point_limit_kw[point].tolist()}, "kW", zone))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in kpis.get("notes", []))
    reference = scenario.get("reference") or {}
    ref_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in reference.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Simulation {html.escape(str(kpis['scenario']))}</title>
<style>body{{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>Scenario {html.escape(str(kpis['scenario']))}</h1>
<p>{html.escape(str(scenario.get('description', '')))}</p>
<p>{kpis['sessions_in_delivery']} sessions on {kpis['chargers']} chargers, delivery from
{html.escape(str(kpis['delivery_start']))} for {kpis['days']:g} day(s); simulated in {kpis['wall_seconds']} s.</p>
<h2>KPIs (controlled vs uncontrolled charging of the same sessions)</h2><table>{rows}</table>
{'<h2>Pilot reference</h2><table>' + ref_rows + '</table>' if ref_rows else ''}
<h2>The delivery period</h2>{''.join(f'<div>{c}</div>' for c in charts)}
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
</body></html>
"""
