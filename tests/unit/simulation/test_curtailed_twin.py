"""A need is feasible only as far as a DSO's curtailment of the car's device (§14a) lets full power deliver it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sim.cpo.elaad import EvModel
from sim.cpo.fleet import Car
from vpp.simulation.runner import SessionRecord, uncontrolled_twin

START = datetime(2024, 6, 11, 15, tzinfo=UTC)


def _record(need_kwh: float) -> SessionRecord:
    # 100 kWh at 10 %: no taper before 80 %, so 11 kW until the need is met.
    model = EvModel(name="t", battery_kwh=100.0, max_ac_kw=11.0, max_dc_kw=50.0, max_ac_discharge_kw=0.0,
                    max_dc_discharge_kw=0.0, registrations=1)
    car = Car(model=model, soc=0.1, energy_demand_kwh=need_kwh)
    return SessionRecord(party="DE/LEW", location_id="LOC001", external_id="s", start=START,
                         departure=START + timedelta(hours=3), car=car, evse_max_kw=11.0, dc=False, need_kwh=need_kwh)


def test_the_twin_under_a_cap_draws_the_cap_in_its_window_and_full_power_after() -> None:
    # 20 kWh in 3 h: uncontrolled 11 kW for 1.82 h; capped at 4 kW for the first 2 h (8 kWh), then 11 kW for the
    # last hour (11 kWh): 19 kWh, so the need is not feasible under the cap.
    record = _record(20.0)
    assert sum(kwh for _, kwh in uncontrolled_twin(record)) == pytest.approx(20.0)
    window = [(START, START + timedelta(hours=2), 4.0)]
    capped = uncontrolled_twin(record, caps=window)
    assert sum(kwh for _, kwh in capped) == pytest.approx(19.0)
    assert sum(kwh for at, kwh in capped if at < START + timedelta(hours=2)) == pytest.approx(8.0)


def test_a_window_that_starts_inside_a_step_cuts_it_there() -> None:
    # A cap of 0 kW from 15:00:30 for an hour: the first step ends at 15:00:30 (11 kW for 30 s), nothing for the
    # hour, then full power until the need is met (1.99 h would give 21.9 kWh): 20 kWh in all.
    record = _record(20.0)
    window = [(START + timedelta(seconds=30), START + timedelta(hours=1, seconds=30), 0.0)]
    capped = uncontrolled_twin(record, caps=window)
    first = capped[0]
    assert first[0] == START and first[1] == pytest.approx(11.0 * 30 / 3600)
    low, high = window[0][:2]
    assert sum(kwh for at, kwh in capped if low <= at < high) == pytest.approx(0.0)
    assert sum(kwh for _, kwh in capped) == pytest.approx(20.0)
