import json
import subprocess
import sys
from pathlib import Path


def _vpp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpp.cli", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_settle_flex_order_reproduces_the_usef_example(tmp_path: Path) -> None:
    instance = {"price_eur_per_mw": 7, "penalty_eur_per_mw": 11,
                "isps": [{"baseline_mw": 10, "ordered_mw": 2, "actual_mw": a} for a in (7, 8, 9, 10, 11)]}
    path = tmp_path / "order.json"
    path.write_text(json.dumps(instance))
    done = _vpp("solve", "settle-flex-order", "--instance", str(path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [round(i["net_eur"], 6) for i in result["isps"]] == [14, 14, -4, -22, -33]
    assert round(result["net_eur"], 6) == -31


def test_solve_dayahead_writes_the_schedule_and_prints_one_json_object(tmp_path: Path) -> None:
    instance = {
        "start": "2025-06-01T22:00:00Z", "isp_minutes": 15,
        "prices_eur_per_mwh": [50, 10, 30, 20], "pool_max_kw": 10, "pool_min_kw": None,
        "sessions": [{"id": "a", "arrival": 0, "departure": 4, "energy_kwh": 2.5, "max_kw": 11, "min_kw": 0},
                     {"id": "b", "arrival": 1, "departure": 3, "energy_kwh": 1.0, "max_kw": 7, "min_kw": 0}],
    }
    src, out = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(instance))
    done = _vpp("solve", "dayahead", "--instance", str(src), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "optimal"
    result = json.loads(out.read_text())
    assert result["pool_kw"][1] == 10
    assert abs(sum(result["schedule_kw"]["a"]) * 0.25 - 2.5) < 1e-6
    assert result["unmet_kwh"] == {"a": 0.0, "b": 0.0}


def test_solve_dayahead_refuses_an_inconsistent_instance_with_the_reason(tmp_path: Path) -> None:
    instance = {"start": "2025-06-01T22:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [1, 2, 3, 4],
                "pool_max_kw": None, "pool_min_kw": None,
                "sessions": [{"id": "a", "arrival": 2, "departure": 1, "energy_kwh": 1, "max_kw": 1, "min_kw": 0}]}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(instance))
    done = _vpp("solve", "dayahead", "--instance", str(src), "--out", str(tmp_path / "o.json"))
    assert done.returncode == 2
    assert "departure" in done.stderr


def test_solve_allocate_meets_the_target_within_group_caps(tmp_path: Path) -> None:
    instance = {
        "target_kw": 20.0,
        "sessions": [
            {"id": "s1", "min_kw": 0, "max_kw": 11, "energy_needed_kwh": 5, "hours_to_departure": 8, "current_kw": 0},
            {"id": "s2", "min_kw": 0, "max_kw": 11, "energy_needed_kwh": 5, "hours_to_departure": 8, "current_kw": 0},
            {"id": "s3", "min_kw": 0, "max_kw": 11, "energy_needed_kwh": 5, "hours_to_departure": 8, "current_kw": 0},
        ],
        "groups": [{"id": "site", "max_kw": 12, "members": ["s1", "s2"]}],
    }
    src, out = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(instance))
    done = _vpp("solve", "allocate", "--instance", str(src), "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert abs(result["total_kw"] - 20.0) < 1e-6
    assert result["setpoints_kw"]["s1"] + result["setpoints_kw"]["s2"] <= 12 + 1e-9


def test_forecast_backtest_reports_errors_on_held_out_simulated_days() -> None:
    done = _vpp("forecast", "backtest", "--pool", "site:depot", "--days", "7", "--simulate-days", "35",
                "--sessions-per-day", "20", "--category", "workplace")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["held_out_days"] == 7
    assert report["isps"] == 7 * 96
    assert 0 <= report["arrivals_coverage_p10_p90"] <= 1
    assert report["arrivals_mae"] >= 0


def test_forecast_backtest_refuses_a_malformed_pool() -> None:
    done = _vpp("forecast", "backtest", "--pool", "depot", "--days", "7", "--simulate-days", "20")
    assert done.returncode == 2
    assert "<kind>:<key>" in done.stderr
