"""Learned need defaults with EVSE -> location -> category -> ElaadNL fallback."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from vpp.algorithms.needs import default_need, estimate_for, learn_need_defaults
from vpp.data.elaad import elaad_need_estimates
from vpp.domain.errors import InvalidInput
from vpp.domain.needs import EstimateLevel, NeedSource


def history() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for evse, location, count, dwell in (("E1", "L1", 30, 10.0), ("E2", "L1", 5, 2.0), ("E3", "L2", 4, 3.0)):
        arrival = pd.Timestamp("2025-01-06 18:00", tz="UTC") + pd.to_timedelta(np.arange(count), unit="D")
        hours = dwell + rng.uniform(-0.5, 0.5, count)
        rows.append(
            pd.DataFrame(
                {
                    "evse_id": evse,
                    "location_id": location,
                    "category": "home",
                    "arrival": arrival,
                    "departure": arrival + pd.to_timedelta(hours, unit="h"),
                    "energy_kwh": rng.uniform(5, 15, count),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_fallback_goes_evse_then_location_then_category_then_elaad() -> None:
    defaults = learn_need_defaults(history(), elaad_need_estimates(), min_samples=20)
    assert estimate_for(defaults, "home", evse_id="E1").level is EstimateLevel.EVSE
    # E2 has 5 sessions only; its location L1 has 35
    assert estimate_for(defaults, "home", evse_id="E2", location_id="L1").level is EstimateLevel.LOCATION
    assert estimate_for(defaults, "home", evse_id="E3", location_id="L2").level is EstimateLevel.CATEGORY
    assert estimate_for(defaults, "public").level is EstimateLevel.ELAAD


def test_estimates_use_a_low_dwell_and_a_high_energy_quantile() -> None:
    frame = history()
    defaults = learn_need_defaults(frame, elaad_need_estimates(), dwell_quantile=0.25, energy_quantile=0.75)
    e1 = frame[frame["evse_id"] == "E1"]
    dwell = (e1["departure"] - e1["arrival"]).dt.total_seconds() / 3600
    assert defaults.by_evse["E1"].dwell_hours == pytest.approx(dwell.quantile(0.25))
    assert defaults.by_evse["E1"].energy_kwh == pytest.approx(e1["energy_kwh"].quantile(0.75))
    assert 0 < defaults.by_evse["E1"].confidence < 0.75


def test_default_need_adds_the_dwell_to_the_arrival() -> None:
    defaults = learn_need_defaults(history(), elaad_need_estimates())
    arrival = datetime(2025, 2, 1, 18, tzinfo=UTC)
    need = default_need(arrival, defaults, "home", evse_id="E1", max_energy_kwh=4.0)
    assert need.source is NeedSource.LEARNED
    dwell_h = (need.departure - arrival).total_seconds() / 3600
    assert dwell_h == pytest.approx(defaults.by_evse["E1"].dwell_hours, abs=1e-6)
    assert need.energy_kwh == 4.0
    fallback = default_need(arrival, defaults, "workplace")
    assert fallback.source is NeedSource.DEFAULT


def test_history_without_required_columns_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="history"):
        learn_need_defaults(history().drop(columns=["energy_kwh"]), elaad_need_estimates())
