"""The arrival profiles' fit is pandas' grouped sum, mean, count and linear quantiles, to the bit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from vpp.algorithms.forecast import QUANTILES, _slot_keys, fit_profiles, isp_actuals


def _grouped(history: pd.DataFrame, tz: str, observed_from: datetime | None,
             observed_until: datetime | None) -> pd.DataFrame:
    """The fit as pandas groups it: per-day values, then per pool, day type and slot their mean, count, quantiles."""
    actuals = isp_actuals(history, tz)
    isps = pd.DatetimeIndex(actuals.index.get_level_values("isp_start"))
    keep = np.ones(len(isps), dtype=bool)
    if observed_from is not None:
        keep &= np.asarray(isps >= pd.Timestamp(observed_from))
    if observed_until is not None:
        keep &= np.asarray(isps + pd.Timedelta(minutes=15) <= pd.Timestamp(observed_until))
    actuals = actuals[keep]
    keys = _slot_keys(pd.DatetimeIndex(actuals.index.get_level_values("isp_start")), tz)
    frame = actuals.reset_index()
    frame["day"], frame["weekend"], frame["slot"] = (keys["day"].to_numpy(), keys["weekend"].to_numpy(),
                                                     keys["slot"].to_numpy())
    per_day = frame.groupby(["pool", "weekend", "slot", "day"], sort=False).agg(
        arrivals=("arrivals", "sum"), plugged_in=("plugged_in", "mean"), energy_kwh=("energy_kwh", "sum"))
    grouped = per_day.groupby(level=["pool", "weekend", "slot"])
    parts = [grouped.mean().add_suffix("_mean"), grouped.size().rename("days")]
    for q in QUANTILES:
        parts.append(grouped.quantile(q).add_suffix(f"_p{round(q * 100)}"))
    return pd.concat(parts, axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_the_fit_is_pandas_grouping_to_the_bit_over_random_histories_and_both_clock_changes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    starts = [datetime(2024, 10, 22, tzinfo=UTC), datetime(2024, 3, 26, tzinfo=UTC), datetime(2024, 6, 4, tzinfo=UTC)]
    for trial in range(40):
        base = starts[trial % 3] + timedelta(hours=int(rng.integers(0, 48)))
        m = int(rng.integers(5, 300))
        arrival = [base + timedelta(minutes=int(x)) for x in rng.integers(0, 8 * 1440, m)]
        history = pd.DataFrame({
            "pool": rng.choice(["zone:FR", "zone:NL", "site:a"][: int(rng.integers(1, 4))], m),
            "arrival": pd.to_datetime(arrival, utc=True),
            "departure": pd.to_datetime([a + timedelta(minutes=float(s))
                                         for a, s in zip(arrival, rng.exponential(600, m), strict=True)], utc=True),
            # Fractional kWh: the sums depend on the order and the compensation of the additions.
            "energy_kwh": rng.uniform(0, 40, m)})
        tz = ["Europe/Paris", "Europe/Amsterdam", "UTC"][int(rng.integers(0, 3))]
        observed: dict[str, datetime] = {}
        if trial % 4:
            observed = {"observed_from": base - timedelta(hours=int(rng.integers(0, 30))),
                        "observed_until": base + timedelta(days=8, minutes=15 * int(rng.integers(0, 96)))}
        expected = _grouped(history, tz, observed.get("observed_from"), observed.get("observed_until"))
        pd.testing.assert_frame_equal(fit_profiles(history, tz, **observed), expected, check_exact=True)
