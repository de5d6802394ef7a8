"""The table "Bundled scenarios and the pilots" of docs/scenarios.md, from the scenarios' kpis.json.

Each row puts a bundled scenario's like-for-like figures (the delivery period's sessions followed until they
leave) beside the pilot figure its file quotes (``reference``, from the pilots' table of the use cases) and the
perfect-foresight optimum of the same sessions. ``vpp pilots`` runs the scenarios and prints it.
"""

from __future__ import annotations

from typing import Any

HEADER = ("| scenario | pilot | pilot's figure | our scaling | ours, like for like | perfect foresight | wall |\n"
          "|---|---|---|---|---|---|---|")


def _num(value: Any, digits: int = 1) -> str:
    """A figure with thousands separators, or "n/a"."""
    if value is None:
        return "n/a"
    return f"{float(value):,.{digits}f}"


def _pct(value: Any) -> str:
    """A signed percentage, or "n/a"."""
    return "n/a" if value is None else f"{float(value):+.1f} %"


def ours(kpis: dict[str, Any]) -> str:
    """The controlled twin's figures against the uncontrolled one, and those only some scenarios have."""
    price_unc = _num(kpis.get("price_paid_eur_per_mwh_uncontrolled"), 2)
    parts = [
        f"needs met {_num(kpis.get('needs_met_pct'), 2)} % ({kpis.get('sessions_feasible', 0):,} feasible of "
        f"{kpis.get('sessions_judged', 0):,})",
        f"price paid {_num(kpis.get('price_paid_eur_per_mwh'), 2)} vs {price_unc} EUR/MWh uncontrolled "
        f"({_pct(_neg(kpis.get('price_paid_reduction_pct')))}), capture {_num(kpis.get('price_capture_pct'))} %",
        f"peak {_num(kpis.get('peak_kw'))} vs {_num(kpis.get('peak_kw_uncontrolled'))} kW "
        f"(**{_pct(_neg(kpis.get('peak_reduction_pct')))}**)",
        f"energy {_num(kpis.get('energy_delivered_kwh'))} / {_num(kpis.get('energy_uncontrolled_kwh'))} kWh",
    ]
    if kpis.get("congestion_violation_isps_uncontrolled") or kpis.get("congestion_violation_isps"):
        parts.append(f"congestion ISPs over the limit {kpis['congestion_violation_isps']} (uncontrolled "
                     f"{kpis['congestion_violation_isps_uncontrolled']})")
    if kpis.get("curtailment_compliance_pct") is not None:
        parts.append(f"§14a compliance **{_num(kpis['curtailment_compliance_pct'])} %** of "
                     f"{kpis.get('curtailment_device_isps', 0)} device-ISPs (uncontrolled "
                     f"{_num(kpis.get('curtailment_compliance_pct_uncontrolled'))} % of "
                     f"{kpis.get('curtailment_device_isps_uncontrolled', 0)})")
    if kpis.get("afrr_setpoints_sent"):
        parts.append(f"aFRR {_num(kpis.get('afrr_awarded_mw'), 0)} MW awarded, "
                     f"{_num(kpis.get('afrr_steps_within_tolerance_pct'))} % of {kpis.get('afrr_steps_scored', 0)} "
                     "scored steps within 5 %")
    if kpis.get("dayahead_imbalance_pct") is not None:
        parts.append(f"day-ahead imbalance {_num(kpis['dayahead_imbalance_pct'])} %")
    return "; ".join(parts)


def _neg(value: Any) -> float | None:
    """A reduction as a change (a 10 % reduction is -10 %)."""
    return None if value is None else -float(value)


def perfect_foresight(kpis: dict[str, Any]) -> str:
    """The optimum with hindsight on the same sessions, prices and caps."""
    price = kpis.get("price_paid_eur_per_mwh_perfect_foresight")
    if price is None:
        return "n/a"
    unc = kpis.get("price_paid_eur_per_mwh_uncontrolled")
    change = None if not unc else 100.0 * (float(price) - float(unc)) / float(unc)
    return f"{_num(price, 2)} EUR/MWh ({_pct(change)}), peak {_num(kpis.get('peak_kw_perfect_foresight'))} kW"


def _cell(text: Any) -> str:
    return str(text or "-").replace("|", "\\|").replace("\n", " ")


def row(name: str, kpis: dict[str, Any], reference: dict[str, str]) -> str:
    """One table row: the scenario, its pilot and figure, our scaling, our figures, the optimum, the wall time."""
    return (f"| `{name}` | {_cell(reference.get('pilot'))} | {_cell(reference.get('figure'))} | "
            f"{_cell(reference.get('scaling'))} | {ours(kpis)} | {perfect_foresight(kpis)} | "
            f"{_num(kpis.get('wall_seconds'), 0)} s |")


def table(rows: list[tuple[str, dict[str, Any], dict[str, str]]]) -> str:
    """The whole table, one row per (name, kpis, reference)."""
    return "\n".join([HEADER, *(row(name, kpis, reference) for name, kpis, reference in rows)])


__all__ = ["HEADER", "ours", "perfect_foresight", "row", "table"]
