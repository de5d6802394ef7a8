"""Forecast of sessions not yet plugged in: arrivals, plugged-in cars, energy and power per pool and ISP.

Method: empirical quantiles. History is cut into local days of the market zone; for every pool, day
type (weekday / weekend) and local quarter-hour of the day we take the per-day values (arrivals,
cars plugged in at the ISP midpoint, energy of the arrivals) and publish their P10 / P50 / P90 and
mean. Power follows from the plugged-in count times a per-car max (and min, for V2G) power. On the
autumn DST day the repeated hour's arrivals add up in their wall-clock slot. ISPs outside the observed period
(``observed_from`` / ``observed_until``, e.g. the rest of today after the forecast is made) are left out of the
per-day values instead of counting as ISPs without cars.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import DEFAULT_MARKET_TZ, ISP_MINUTES, IspHorizon, market_zone, require_utc_index

QUANTILES = (0.1, 0.5, 0.9)
METRICS = ("arrivals", "plugged_in", "energy_kwh")
_ISP_NS = ISP_MINUTES * 60 * 1_000_000_000


def _validate(history: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("arrival", "departure", "energy_kwh", "pool") if c not in history.columns]
    if missing:
        raise InvalidInput(f"history: missing columns {missing}")
    if history.empty:
        raise InvalidInput("history: no sessions")
    arrival = require_utc_index(history["arrival"], "history.arrival")
    departure = require_utc_index(history["departure"], "history.departure")
    if (departure.asi8 < arrival.asi8).any():
        raise InvalidInput("history.departure: a session departs before it arrives")
    return pd.DataFrame(
        {
            "arrival_ns": arrival.asi8,
            "departure_ns": departure.asi8,
            "energy_kwh": pd.to_numeric(history["energy_kwh"], errors="coerce").fillna(0.0).to_numpy(),
            "pool": history["pool"].astype(str).to_numpy(),
        }
    )


def _local_days(first_ns: int, last_ns: int, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    zone = market_zone(tz)
    first = pd.Timestamp(first_ns, tz="UTC").tz_convert(zone).normalize()
    # The next local midnight (a calendar day: 23 or 25 hours across a clock change, not 24).
    last = (pd.Timestamp(last_ns, tz="UTC").tz_convert(zone).normalize() + pd.DateOffset(days=1)).normalize()
    return first.tz_convert("UTC"), last.tz_convert("UTC")


def _isp_arrays(history: pd.DataFrame, tz: str) -> tuple[npt.NDArray[np.object_], pd.DatetimeIndex,
                                                          npt.NDArray[np.float64]]:
    """The pools, the ISPs of the whole local days the history covers and, per metric of :data:`METRICS`, pool and
    ISP: arrivals, plugged-in cars, arriving energy."""
    frame = _validate(history)
    start, end = _local_days(int(frame["arrival_ns"].min()), int(frame["arrival_ns"].max()), tz)
    grid = pd.date_range(start, end, freq=f"{ISP_MINUTES}min", inclusive="left", tz="UTC", name="isp_start")
    t = len(grid)
    origin = grid[0].value
    pools, pool_code = np.unique(frame["pool"].to_numpy(), return_inverse=True)
    arrive_isp = (frame["arrival_ns"].to_numpy() - origin) // _ISP_NS
    # plugged in at the ISP midpoint: counted from the first ISP whose midpoint is at or after arrival
    half = _ISP_NS // 2
    on = np.clip(-((origin + half - frame["arrival_ns"].to_numpy()) // _ISP_NS), 0, t)
    off = np.clip(-((origin + half - frame["departure_ns"].to_numpy()) // _ISP_NS), 0, t)
    size = len(pools) * (t + 1)
    arrivals = np.bincount(pool_code * (t + 1) + arrive_isp, minlength=size).reshape(len(pools), t + 1)
    energy = np.bincount(
        pool_code * (t + 1) + arrive_isp, weights=frame["energy_kwh"].to_numpy(), minlength=size
    ).reshape(len(pools), t + 1)
    base = pool_code * (t + 1)
    steps = np.bincount(base + on, minlength=size) - np.bincount(base + off, minlength=size)
    plugged = np.cumsum(steps.reshape(len(pools), t + 1), axis=1)
    values = np.stack([arrivals[:, :t].astype(np.float64), plugged[:, :t].astype(np.float64),
                       energy[:, :t].astype(np.float64)])
    return pools, grid, values


def isp_actuals(history: pd.DataFrame, tz: str = DEFAULT_MARKET_TZ) -> pd.DataFrame:
    """Per pool and ISP of the whole local days the history covers: arrivals, plugged-in cars, arriving energy."""
    pools, grid, values = _isp_arrays(history, tz)
    index = pd.MultiIndex.from_product([pools, grid], names=["pool", "isp_start"])
    return pd.DataFrame({name: values[m].ravel() for m, name in enumerate(METRICS)}, index=index)


def _slot_keys(isps: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    local = isps.tz_convert(market_zone(tz))
    return pd.DataFrame(
        {
            "day": local.date,
            "weekend": local.day_of_week >= 5,
            "slot": local.hour * (60 // ISP_MINUTES) + local.minute // ISP_MINUTES,
        },
        index=isps,
    )


def _observed(isps: pd.DatetimeIndex, observed_from: datetime | None, observed_until: datetime | None
              ) -> npt.NDArray[np.bool_]:
    """ISPs wholly inside [observed_from, observed_until): the others hold no information, not zero cars."""
    keep = np.ones(len(isps), dtype=bool)
    if observed_from is not None:
        keep &= np.asarray(isps >= pd.Timestamp(observed_from))
    if observed_until is not None:
        keep &= np.asarray(isps + pd.Timedelta(minutes=ISP_MINUTES) <= pd.Timestamp(observed_until))
    return keep


def fit_profiles(history: pd.DataFrame, tz: str = DEFAULT_MARKET_TZ, *, observed_from: datetime | None = None,
                 observed_until: datetime | None = None) -> pd.DataFrame:
    """Per pool, day type and local slot: P10/P50/P90 and mean of the per-day metrics, and the day count.

    ``observed_until`` is when the history was read (a session still plugged in then is not in it, and no car
    has arrived after it yet): later ISPs of the last day are unobserved and left out, as are ISPs before
    ``observed_from``. A slot without any observed day gets no profile row.
    """
    for name, moment in (("observed_from", observed_from), ("observed_until", observed_until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name} must carry a time zone")
    pools, grid, values = _isp_arrays(history, tz)
    keep = _observed(grid, observed_from, observed_until)
    if not keep.any():
        raise InvalidInput("history: no whole ISP lies inside the observed period")
    keys = _slot_keys(grid[keep], tz)
    return _profiles(pools, keys, values[:, :, keep])


def _kahan_sums(values: npt.NDArray[np.float64], group: npt.NDArray[np.int64], groups: int
                ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per group (``group``: each value's, in the values' order) the compensated sum of its values, added in that
    order, and their count: the sums and counts of pandas' grouped sum and mean (Kahan summation), to the bit.

    ``values`` is metrics x items; the items of a group are added one round at a time (its first of each group,
    then its second, ...), which keeps each group's order.
    """
    count = np.bincount(group, minlength=groups).astype(np.int64)
    rank = np.zeros(group.size, dtype=np.int64)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank[order] = np.arange(group.size) - np.repeat(starts, count)
    total = np.zeros((values.shape[0], groups))
    compensation = np.zeros((values.shape[0], groups))
    for r in range(int(count.max(initial=0))):
        at = rank == r
        g = group[at]
        y = values[:, at] - compensation[:, g]
        t = total[:, g] + y
        c = t - total[:, g] - y
        compensation[:, g] = np.where(np.isnan(c), 0.0, c)
        total[:, g] = t
    return total, count


def _profiles(pools: npt.NDArray[np.object_], keys: pd.DataFrame, values: npt.NDArray[np.float64]) -> pd.DataFrame:
    """The profiles of :func:`fit_profiles` from each pool's observed ISPs (``values``: metrics x pools x ISPs, in
    the order of :data:`METRICS`; ``keys``: each ISP's local day, day type and slot).

    As pandas groups them, without its per-call cost (a re-plan fits the profiles each time): the per-day values
    (sums of the day's ISPs in a slot, the plugged-in cars their mean: a slot has two ISPs on the autumn clock
    change), then per pool, day type and slot their mean, their count and their quantiles (linear between the two
    nearest of the sorted values).
    """
    n_pools, n_isps = len(pools), len(keys)
    day_code, days = pd.factorize(keys["day"].to_numpy())
    weekend = keys["weekend"].to_numpy(dtype=bool)
    slot_values = keys["slot"].to_numpy()
    slot = slot_values.astype(np.int64)
    n_slots = int(slot.max(initial=0)) + 1
    # Per day: (pool, day, slot) groups in order of their first ISP, as pandas' ``sort=False`` keeps them.
    flat_key = ((np.arange(n_pools)[:, None] * len(days) + day_code[None, :]) * n_slots + slot[None, :]).ravel()
    uniq, first, inverse = np.unique(flat_key, return_index=True, return_inverse=True)
    rank_of = np.empty(uniq.size, dtype=np.int64)
    rank_of[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    day_group = rank_of[inverse.ravel()]
    metrics = values.reshape(len(METRICS), n_pools * n_isps)
    sums, count = _kahan_sums(metrics, day_group, uniq.size)
    per_day = sums.copy()
    per_day[1] = sums[1] / count  # plugged-in: the mean of the day's ISPs in the slot
    head = np.sort(first)
    pool_of = head // n_isps
    isp_of = head % n_isps
    # Per pool, day type and slot (pandas sorts these groups): the per-day values in their order.
    slot_key = (pool_of * 2 + weekend[isp_of]) * n_slots + slot[isp_of]
    groups, slot_group = np.unique(slot_key, return_inverse=True)
    slot_group = slot_group.ravel()
    totals, n_days = _kahan_sums(per_day, slot_group, groups.size)
    columns: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]] = {}
    for m, name in enumerate(METRICS):
        columns[f"{name}_mean"] = totals[m] / n_days
    columns["days"] = n_days
    starts = np.concatenate([[0], np.cumsum(n_days)[:-1]])
    last = starts + n_days - 1
    for q in QUANTILES:
        position = q * (n_days - 1).astype(np.float64)
        below = starts + position.astype(np.int64)
        frac = position % 1
        for m, name in enumerate(METRICS):
            # Each group's values sorted, the groups one after the other.
            ordered = per_day[m][np.lexsort((per_day[m], slot_group))]
            low, high = ordered[below], ordered[np.minimum(below + 1, last)]
            columns[f"{name}_p{round(q * 100)}"] = np.where(frac == 0.0, low, low + (high - low) * frac)
    index = pd.MultiIndex.from_arrays(
        [pools[groups // (2 * n_slots)], (groups // n_slots) % 2 == 1, (groups % n_slots).astype(slot_values.dtype)],
        names=["pool", "weekend", "slot"])
    frame = pd.DataFrame(columns, index=index)
    names = [f"{m}_mean" for m in METRICS] + ["days"] + [f"{m}_p{round(q * 100)}" for q in QUANTILES for m in METRICS]
    return frame[names]


def forecast_sessions(
    history: pd.DataFrame,
    horizon: IspHorizon,
    *,
    tz: str = DEFAULT_MARKET_TZ,
    max_kw_per_car: float = 11.0,
    min_kw_per_car: float = 0.0,
    profiles: pd.DataFrame | None = None,
    observed_from: datetime | None = None,
    observed_until: datetime | None = None,
) -> pd.DataFrame:
    """Per pool and future ISP: arrivals, plugged-in, energy and power bounds as P10/P50/P90 and mean.

    ``observed_from`` / ``observed_until`` bound the period the history covers (see :func:`fit_profiles`).
    """
    if max_kw_per_car < 0 or min_kw_per_car > 0:
        raise InvalidInput("max_kw_per_car must be >= 0 and min_kw_per_car <= 0")
    fitted = (fit_profiles(history, tz, observed_from=observed_from, observed_until=observed_until)
              if profiles is None else profiles)
    keys = _slot_keys(horizon.index, tz)
    pools = fitted.index.get_level_values("pool").unique()
    lookup = pd.MultiIndex.from_arrays(
        [
            np.repeat(pools.to_numpy(), len(keys)),
            np.tile(keys["weekend"].to_numpy(), len(pools)),
            np.tile(keys["slot"].to_numpy(), len(pools)),
        ],
        names=["pool", "weekend", "slot"],
    )
    values = fitted.reindex(lookup)
    values.index = pd.MultiIndex.from_arrays(
        [np.repeat(pools.to_numpy(), len(keys)), np.tile(horizon.index, len(pools))], names=["pool", "isp_start"]
    )
    values["days"] = values["days"].fillna(0).astype(int)
    values = values.fillna(0.0)
    for suffix in ("mean", *(f"p{round(q * 100)}" for q in QUANTILES)):
        values[f"p_max_kw_{suffix}"] = values[f"plugged_in_{suffix}"] * max_kw_per_car
        values[f"p_min_kw_{suffix}"] = values[f"plugged_in_{suffix}"] * min_kw_per_car
    return values


def backtest(
    history: pd.DataFrame,
    pool: str,
    days: int,
    *,
    tz: str = DEFAULT_MARKET_TZ,
    max_kw_per_car: float = 11.0,
) -> dict[str, float | int | str]:
    """Hold out the last ``days`` local days, forecast them from the rest; MAE, RMSE, bias, P10-P90 coverage."""
    if days < 1:
        raise InvalidInput(f"days: must be >= 1, got {days}")
    frame = history[history["pool"].astype(str) == str(pool)]
    if frame.empty:
        raise InvalidInput(f"pool: no sessions for pool {pool!r}")
    arrival = require_utc_index(frame["arrival"], "history.arrival")
    zone = market_zone(tz)
    last_day = arrival.max().tz_convert(zone).date()
    first_test_day = last_day - timedelta(days=days - 1)
    test_start = pd.Timestamp(first_test_day, tz=zone).tz_convert("UTC")
    test_end = pd.Timestamp(last_day + timedelta(days=1), tz=zone).tz_convert("UTC")
    train = frame[arrival < test_start]
    if train.empty:
        raise InvalidInput(f"days: holding out {days} days leaves no training history")
    horizon = IspHorizon(test_start.to_pydatetime(), int((test_end - test_start) / pd.Timedelta(minutes=ISP_MINUTES)))
    forecast = forecast_sessions(train, horizon, tz=tz, max_kw_per_car=max_kw_per_car).loc[str(pool)]
    actual = isp_actuals(frame, tz).loc[str(pool)].reindex(horizon.index, fill_value=0.0)
    report: dict[str, float | int | str] = {
        "pool": str(pool),
        "days": days,
        "train_days": int((test_start - require_utc_index(train["arrival"], "a").min()).days),
        "isps": horizon.count,
    }
    for name, column, scale in (("arrivals", "arrivals", 1.0), ("plugged_kw", "plugged_in", max_kw_per_car)):
        truth = actual[column].to_numpy() * scale
        p50 = forecast[f"{column}_p50"].to_numpy() * scale
        mean = forecast[f"{column}_mean"].to_numpy() * scale
        low = forecast[f"{column}_p10"].to_numpy() * scale
        high = forecast[f"{column}_p90"].to_numpy() * scale
        report[f"{name}_mae"] = float(np.mean(np.abs(p50 - truth)))
        report[f"{name}_rmse"] = float(np.sqrt(np.mean((mean - truth) ** 2)))
        report[f"{name}_bias"] = float(np.mean(mean - truth))
        report[f"{name}_coverage_p10_p90"] = float(np.mean((truth >= low - 1e-9) & (truth <= high + 1e-9)))
    report["energy_kwh_bias"] = float(
        np.sum(forecast["energy_kwh_mean"].to_numpy()) - np.sum(actual["energy_kwh"].to_numpy())
    )
    return report
