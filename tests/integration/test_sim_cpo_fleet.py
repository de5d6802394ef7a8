"""EV physics, profile evaluation and ElaadNL sampling of the simulated CPO."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from adapters.ocpi.v2_2_1.schemas import ChargingProfile, ChargingRateUnit, PowerType
from sim.cpo.elaad import ElaadSampler, EvModel
from sim.cpo.fleet import (
    Car,
    apply_power,
    charge_power_kw,
    limit_to_kw,
    profile_changes_after,
    profile_limit_at,
    taper_factor,
)

MODEL = EvModel("Test EV", 60.0, 11.0, 100.0, 11.0, 10.0, 1)
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def car(soc: float = 0.5, demand: float = 30.0) -> Car:
    return Car(model=MODEL, soc=soc, energy_demand_kwh=demand)


def power(c: Car, limit: float | None = None, *, v2g: bool = False, dc: bool = False, evse: float = 11.0) -> float:
    return charge_power_kw(c, evse_max_kw=evse, dc=dc, limit_kw=limit, v2g_allowed=v2g, seconds=60)


def test_power_is_capped_by_evse_car_and_profile_limit() -> None:
    assert power(car()) == 11.0
    assert power(car(), evse=7.4) == 7.4
    assert power(car(), 3.7) == 3.7
    assert power(car(), 0.0) == 0.0
    assert power(car(), dc=True, evse=150.0) == 100.0


def test_power_tapers_above_80_percent_and_stops_when_full_or_satisfied() -> None:
    assert taper_factor(0.5) == 1.0
    assert taper_factor(0.9) == pytest.approx(0.5)
    assert taper_factor(1.0) == 0.0
    assert power(car(soc=0.9)) == pytest.approx(5.5)
    assert power(car(soc=1.0)) == 0.0
    done = car(demand=5.0)
    done.delivered_kwh = 5.0
    assert power(done) == 0.0


def test_negative_limit_discharges_only_with_v2g_and_above_the_soc_floor() -> None:
    assert power(car(), -5.0) == 0.0
    assert power(car(), -5.0, v2g=True) == -5.0
    assert power(car(), -50.0, v2g=True) == -11.0
    assert power(car(soc=0.2), -5.0, v2g=True) == 0.0


def test_apply_power_moves_soc_and_counts_signed_energy() -> None:
    c = car(soc=0.5)
    assert apply_power(c, 6.0, 3600) == pytest.approx(6.0)
    assert c.soc == pytest.approx(0.6)
    assert apply_power(c, -6.0, 1800) == pytest.approx(-3.0)
    assert c.delivered_kwh == pytest.approx(3.0)


def test_profile_limit_follows_periods_duration_and_absolute_start() -> None:
    relative = ChargingProfile.model_validate(
        {
            "charging_rate_unit": "W",
            "duration": 1800,
            "charging_profile_period": [{"start_period": 0, "limit": 7400}, {"start_period": 900, "limit": 3700}],
        }
    )
    assert profile_limit_at(relative, T0, T0) == 7400.0
    assert profile_limit_at(relative, T0 + timedelta(seconds=900), T0) == 3700.0
    assert profile_limit_at(relative, T0 + timedelta(seconds=1800), T0) is None
    assert profile_changes_after(relative, T0, T0) == T0 + timedelta(seconds=900)
    absolute = relative.model_copy(update={"start_date_time": T0 + timedelta(hours=1)})
    assert profile_limit_at(absolute, T0, T0) is None
    assert profile_limit_at(absolute, T0 + timedelta(hours=1), T0) == 7400.0


def test_amp_limits_are_per_phase() -> None:
    assert limit_to_kw(16, ChargingRateUnit.A, PowerType.AC_3_PHASE, 230) == pytest.approx(11.04)
    assert limit_to_kw(16, ChargingRateUnit.A, PowerType.AC_1_PHASE, 230) == pytest.approx(3.68)
    assert limit_to_kw(7400, ChargingRateUnit.W, PowerType.AC_3_PHASE, 230) == 7.4


def test_elaad_sampler_draws_plausible_sessions() -> None:
    sampler = ElaadSampler(random.Random(3), "public")
    hours = [sampler.connection_hours() for _ in range(400)]
    energy = [sampler.energy_demand_kwh() for _ in range(400)]
    assert min(hours) >= 0.25
    assert max(hours) <= 72
    assert 2 < statistics.median(hours) < 12
    assert 3 < statistics.median(energy) < 30
    after = datetime(2026, 3, 2, 12, tzinfo=UTC)
    arrivals = [sampler.next_arrival(after) for _ in range(50)]
    assert all(after <= a < after + timedelta(days=3) for a in arrivals)
    assert sampler.car().battery_kwh > 0


def test_v2g_sampler_only_draws_cars_that_can_discharge() -> None:
    sampler = ElaadSampler(random.Random(1), "private", v2g=True)
    assert all(sampler.car().max_ac_discharge_kw > 0 for _ in range(20))


def test_inside_a_fast_window_the_cpo_closes_a_charging_period_every_fast_period() -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta
    from itertools import pairwise

    from sim.cpo.clock import ManualClock
    from sim.cpo.config import CpoConfig
    from sim.cpo.simulator import CpoSimulator

    begin = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)
    window = (begin + timedelta(minutes=20), begin + timedelta(minutes=22))
    sim = CpoSimulator(CpoConfig(evses=1, auto_arrivals=False, period_s=900, fast_period_s=10,
                                 fast_windows=[window], seed=3), clock=ManualClock(begin))
    session = sim.plug_in(energy_kwh=30.0, soc=0.3, connection_hours=5.0)
    asyncio.run(sim.run_until(begin + timedelta(minutes=25)))
    starts = [p.start_date_time for p in session.periods]
    # The first slow period ends at 15:15, the window's start closes the next one, then one every 10 s.
    assert starts[0] == begin and starts[1] == begin + timedelta(minutes=15)
    fast = [s for s in starts if window[0] <= s < window[1]]
    # Periods start every 10 s from 15:20:00 to 15:21:40; the one open at the window's end closes on the slow grid.
    assert len(fast) == 11 and all(b - a == timedelta(seconds=10) for a, b in pairwise(fast))
    assert sim.period_s(window[1]) == 900.0
