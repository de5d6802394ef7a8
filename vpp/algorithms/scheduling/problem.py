"""The portfolio scheduling problem: a pool of EV sessions against a day-ahead price series.

Sign convention: positive power is charging (consumption), negative is discharging (V2G).
A session is plugged for ISP indices ``arrival <= t < departure`` and draws nothing outside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from vpp.domain.errors import InvalidInput

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class SchedulingProblem:
    """One scheduling instance; per-ISP arrays have length ``n_isps``, per-session arrays ``n_sessions``.

    Missing pool bounds are +inf (max) and -inf (min); battery fields are NaN for charge-only sessions.

    Optional, for planning against a committed position: ``position_kw`` per ISP (NaN where the pool holds
    none) is what the pool bought; leaving it costs ``imbalance_eur_per_mwh`` per MWh either way, on top of
    the price. ``session_max_kw`` (sessions x ISPs) caps a session's power per ISP below its ``max_kw``.
    ``soc_floor_kwh`` (sessions x ISPs; NaN: none) raises a V2G session's state-of-charge floor at the end of
    each ISP above its ``min_soc_kwh`` (a car may feed back only as far as it can still recharge by departure:
    ``vpp.algorithms.planning.recharge_soc_floor_kwh``); the caller keeps it reachable from ``soc_kwh``.
    """

    start: datetime | None
    isp_hours: float
    prices_eur_per_mwh: FloatArray
    pool_max_kw: FloatArray
    pool_min_kw: FloatArray
    session_ids: tuple[str, ...]
    arrival: IntArray
    departure: IntArray
    energy_kwh: FloatArray
    max_kw: FloatArray
    min_kw: FloatArray
    battery_kwh: FloatArray
    soc_kwh: FloatArray
    min_soc_kwh: FloatArray
    position_kw: FloatArray | None = None
    imbalance_eur_per_mwh: float = 0.0
    session_max_kw: FloatArray | None = None
    soc_floor_kwh: FloatArray | None = None

    @property
    def n_isps(self) -> int:
        return int(self.prices_eur_per_mwh.shape[0])

    @property
    def n_sessions(self) -> int:
        return len(self.session_ids)

    @property
    def is_v2g(self) -> NDArray[np.bool_]:
        """Sessions that may discharge (and whose state of charge is therefore bounded)."""
        return self.min_kw < 0.0

    @property
    def has_pool_limits(self) -> bool:
        return bool(np.isfinite(self.pool_max_kw).any() or np.isfinite(self.pool_min_kw).any())

    @property
    def has_position(self) -> bool:
        """A committed position with a price for leaving it."""
        return bool(self.position_kw is not None and self.imbalance_eur_per_mwh > 0.0
                    and np.isfinite(self.position_kw).any())

    def max_kw_by_isp(self) -> FloatArray:
        """Sessions x ISPs: each session's upper power bound per ISP (``max_kw`` unless capped per ISP)."""
        upper = np.broadcast_to(self.max_kw[:, None], (self.n_sessions, self.n_isps))
        if self.session_max_kw is None:
            return np.array(upper)
        return np.minimum(upper, self.session_max_kw)


@dataclass(frozen=True, eq=False)
class ScheduleResult:
    """A schedule: ``schedule_kw`` is sessions x ISPs; ``unmet_kwh`` is each session's shortfall."""

    status: str
    schedule_kw: FloatArray
    pool_kw: FloatArray
    unmet_kwh: FloatArray
    cost_eur: float
    solve_seconds: float
    method: str


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidInput(f"{field} must be finite, got {result}")
    return result


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise InvalidInput(f"{field} must be an integer ISP index, got {value!r}")
    return int(value)


def _per_isp(value: object, field: str, n_isps: int, missing: float) -> FloatArray:
    if value is None:
        return np.full(n_isps, missing)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n_isps:
            raise InvalidInput(f"{field} has {len(value)} values but there are {n_isps} ISPs")
        return np.array([_number(v, f"{field}[{t}]") for t, v in enumerate(value)], dtype=np.float64)
    return np.full(n_isps, _number(value, field))


def _parse_start(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("start must be an ISO 8601 UTC time string")
    try:
        start = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"start is not an ISO 8601 time: {value!r}") from exc
    if start.utcoffset() != timedelta(0):
        raise InvalidInput(f"start must be a UTC time with offset, got {value!r}")
    return start


def problem_from_instance(instance: Mapping[str, object]) -> SchedulingProblem:
    """Validate an instance (the public JSON format) and build the problem arrays."""
    isp_minutes = _number(instance.get("isp_minutes", 15), "isp_minutes")
    if isp_minutes <= 0:
        raise InvalidInput(f"isp_minutes must be positive, got {isp_minutes}")
    prices_raw = instance.get("prices_eur_per_mwh")
    if not isinstance(prices_raw, Sequence) or isinstance(prices_raw, str) or len(prices_raw) == 0:
        raise InvalidInput("prices_eur_per_mwh must be a non-empty list, one price per ISP")
    prices = np.array(
        [_number(p, f"prices_eur_per_mwh[{t}]") for t, p in enumerate(prices_raw)], dtype=np.float64
    )
    n_isps = prices.shape[0]
    pool_max = _per_isp(instance.get("pool_max_kw"), "pool_max_kw", n_isps, math.inf)
    pool_min = _per_isp(instance.get("pool_min_kw"), "pool_min_kw", n_isps, -math.inf)
    bad = np.flatnonzero(pool_min > pool_max)
    if bad.size:
        raise InvalidInput(f"pool_min_kw exceeds pool_max_kw at ISP {int(bad[0])}")
    sessions_raw = instance.get("sessions")
    if not isinstance(sessions_raw, Sequence) or isinstance(sessions_raw, str):
        raise InvalidInput("sessions must be a list")
    n = len(sessions_raw)
    ids: list[str] = []
    seen: set[str] = set()
    arrival = np.zeros(n, dtype=np.int64)
    departure = np.zeros(n, dtype=np.int64)
    columns = {name: np.full(n, math.nan) for name in _FLOAT_FIELDS}
    for k, raw in enumerate(sessions_raw):
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"sessions[{k}] must be an object")
        sid = raw.get("id")
        if not isinstance(sid, str) or not sid:
            raise InvalidInput(f"sessions[{k}].id must be a non-empty string")
        if sid in seen:
            raise InvalidInput(f"sessions[{k}].id {sid!r} is a duplicate")
        seen.add(sid)
        ids.append(sid)
        where = f"session {sid!r}"
        a = _integer(raw.get("arrival"), f"{where} arrival")
        d = _integer(raw.get("departure"), f"{where} departure")
        if not 0 <= a < n_isps:
            raise InvalidInput(f"{where} arrival {a} is out of range 0..{n_isps - 1}")
        if d <= a:
            raise InvalidInput(f"{where} departure {d} is not after arrival {a}")
        if d > n_isps:
            raise InvalidInput(f"{where} departure {d} is beyond the last ISP boundary {n_isps}")
        arrival[k], departure[k] = a, d
        for name in ("energy_kwh", "max_kw", "min_kw"):
            columns[name][k] = _number(raw.get(name), f"{where} {name}")
        for name in ("battery_kwh", "soc_kwh", "min_soc_kwh"):
            if raw.get(name) is not None:
                columns[name][k] = _number(raw.get(name), f"{where} {name}")
        _check_session(where, {name: float(col[k]) for name, col in columns.items()})
    return SchedulingProblem(
        start=_parse_start(instance.get("start")),
        isp_hours=isp_minutes / 60.0,
        prices_eur_per_mwh=prices,
        pool_max_kw=pool_max,
        pool_min_kw=pool_min,
        session_ids=tuple(ids),
        arrival=arrival,
        departure=departure,
        energy_kwh=columns["energy_kwh"],
        max_kw=columns["max_kw"],
        min_kw=columns["min_kw"],
        battery_kwh=columns["battery_kwh"],
        soc_kwh=columns["soc_kwh"],
        min_soc_kwh=columns["min_soc_kwh"],
    )


_FLOAT_FIELDS = ("energy_kwh", "max_kw", "min_kw", "battery_kwh", "soc_kwh", "min_soc_kwh")


def _check_session(where: str, s: dict[str, float]) -> None:
    if s["energy_kwh"] < 0:
        raise InvalidInput(f"{where} energy_kwh must not be negative, got {s['energy_kwh']}")
    if s["max_kw"] < 0:
        raise InvalidInput(f"{where} max_kw must not be negative, got {s['max_kw']}")
    if s["min_kw"] > s["max_kw"]:
        raise InvalidInput(f"{where} min_kw {s['min_kw']} exceeds max_kw {s['max_kw']}")
    if s["min_kw"] >= 0:
        return
    missing = [name for name in ("battery_kwh", "soc_kwh", "min_soc_kwh") if math.isnan(s[name])]
    if missing:
        raise InvalidInput(f"{where} discharges (min_kw < 0) but lacks {', '.join(missing)}")
    if s["battery_kwh"] <= 0:
        raise InvalidInput(f"{where} battery_kwh must be positive, got {s['battery_kwh']}")
    if not 0 <= s["min_soc_kwh"] <= s["battery_kwh"]:
        raise InvalidInput(f"{where} min_soc_kwh {s['min_soc_kwh']} is outside 0..battery_kwh")
    if not s["min_soc_kwh"] <= s["soc_kwh"] <= s["battery_kwh"]:
        raise InvalidInput(f"{where} soc_kwh {s['soc_kwh']} is outside min_soc_kwh..battery_kwh")
