"""`vpp pilots` prints the pilots' table of docs/scenarios.md from the bundled scenarios' kpis.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vpp.cli import main
from vpp.simulation.pilots import HEADER, row
from vpp.simulation.scenario import load_scenario

KPIS: dict[str, Any] = {
    "needs_met_pct": 97.5, "sessions_feasible": 40, "sessions_judged": 41,
    "price_paid_eur_per_mwh": 90.0, "price_paid_eur_per_mwh_uncontrolled": 100.0,
    "price_paid_eur_per_mwh_perfect_foresight": 80.0, "price_paid_reduction_pct": 10.0, "price_capture_pct": 50.0,
    "peak_kw": 1200.0, "peak_kw_uncontrolled": 2400.0, "peak_kw_perfect_foresight": 1500.0,
    "peak_reduction_pct": 50.0, "energy_delivered_kwh": 5000.0, "energy_uncontrolled_kwh": 5010.0,
    "congestion_violation_isps": 0, "congestion_violation_isps_uncontrolled": 7,
    "curtailment_compliance_pct": None, "afrr_setpoints_sent": 0, "dayahead_imbalance_pct": 12.3,
    "wall_seconds": 61.4,
}


def test_a_row_puts_our_like_for_like_figures_beside_the_pilots_and_the_optimum() -> None:
    reference = load_scenario("toulouse-plus250").reference
    line = row("toulouse-plus250", KPIS, reference)

    cells = [cell.strip() for cell in line.strip("|").split(" | ")]
    assert len(cells) == HEADER.splitlines()[0].count("|") - 1
    assert cells[0] == "`toulouse-plus250`"
    assert cells[1] == "B3 Toulouse car-park depot (Enedis)"
    assert "50 %" in cells[2]
    assert "price paid 90.00 vs 100.00 EUR/MWh uncontrolled (-10.0 %), capture 50.0 %" in cells[4]
    assert "peak 1,200.0 vs 2,400.0 kW (**-50.0 %**)" in cells[4]
    assert "needs met 97.50 % (40 feasible of 41)" in cells[4]
    assert "congestion ISPs over the limit 0 (uncontrolled 7)" in cells[4]
    assert "aFRR" not in cells[4] and "§14a" not in cells[4]
    assert cells[5] == "80.00 EUR/MWh (-20.0 %), peak 1,500.0 kW"
    assert cells[6] == "61 s"


def test_the_command_prints_the_table_from_the_kpis_already_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("toulouse", "home-14a"):
        (tmp_path / name).mkdir()
        kpis = {**KPIS, "curtailment_compliance_pct": 100.0, "curtailment_device_isps": 300,
                "curtailment_compliance_pct_uncontrolled": 30.2, "curtailment_device_isps_uncontrolled": 172} \
            if name == "home-14a" else KPIS
        (tmp_path / name / "kpis.json").write_text(json.dumps(kpis))

    code = main(["pilots", "--out", str(tmp_path), "--scenario", "toulouse", "--scenario", "home-14a", "--no-run"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("commit ") and "load average" in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert [line.split(" | ")[0] for line in rows] == ["| `toulouse`", "| `home-14a`"]
    assert "§14a compliance **100.0 %** of 300 device-ISPs (uncontrolled 30.2 % of 172)" in rows[1]


def test_the_command_refuses_unknown_scenarios_and_missing_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pilots", "--out", str(tmp_path), "--scenario", "atlantis", "--no-run"]) == 2
    assert "no bundled scenario atlantis" in capsys.readouterr().err
    assert main(["pilots", "--out", str(tmp_path), "--scenario", "toulouse", "--no-run"]) == 2
    assert "kpis.json is missing" in capsys.readouterr().err
