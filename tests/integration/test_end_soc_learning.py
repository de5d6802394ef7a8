"""Where cars stop charging is learned from finished sessions in the database and reaches the fleet the planner,
the day-ahead position and the dispatcher read; a car with no history keeps the full-battery assumption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.db import unit_of_work
from vpp.portfolio.end_soc import EndSocCache, LiveBatteryCache
from vpp.portfolio.fleet import load_fleet
from vpp.sessions import service as sessions
from vpp.sessions.values import Reading, SessionRecord

NOW = datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
# The hand case of tests/unit/algorithms/test_end_soc.py: 11, 11, 6.6 and 2 kW, then nothing while plugged in.
EXPECTED = 0.88 + 1.325 / 60.0


def _finished(factory: sessionmaker[Session], cid: str, name: str, token: str, start: datetime,
              power: list[float]) -> None:
    readings = tuple(Reading(start=start + timedelta(minutes=15 * k), power_kw=kw, energy_kwh=kw / 4.0)
                     for k, kw in enumerate(power))
    end = start + timedelta(minutes=15 * len(power))
    record = SessionRecord(
        country_code="NL", party_id="CPA", external_id=name, status="completed", start=start,
        energy_kwh=sum(power) / 4.0, location_id="LOC1", evse_uid="LOC1-E0", connector_id="1", currency="EUR",
        last_updated=end, end=end, driver_token={"uid": token, "type": "RFID"}, readings=readings)
    with unit_of_work(factory) as db:
        sessions.replace(db, cid, record)


def test_a_car_that_stopped_on_its_own_is_planned_to_its_end_and_a_new_car_to_a_full_battery(
    session_factory: sessionmaker[Session],
) -> None:
    cid = _cpo(session_factory)
    _finished(session_factory, cid, "F1", "CAR1", NOW - timedelta(days=1), [11.0, 11.0, 6.6, 2.0, 0.0])
    # Left while still charging: says nothing.
    _finished(session_factory, cid, "F2", "CAR2", NOW - timedelta(days=1), [11.0, 11.0, 11.0])
    for name, evse, token in (("A1", 1, "CAR1"), ("A2", 2, "CAR2")):
        add_session(session_factory, cid, session_id=name, location_id="LOC1", evse=evse,
                    start=NOW - timedelta(hours=1), delivered_kwh=5.0, power_kw=11.0, token_uid=token)

    cache = EndSocCache(ttl_seconds=900.0)
    with session_factory() as db:
        learned = cache.get(db, NOW)
        fleet = load_fleet(db, NOW)
    assert learned.judged == 1
    assert learned.by_car == {"token:||car1": pytest.approx(EXPECTED)}
    targets = dict(zip(fleet.session_ids, fleet.target_soc, strict=True))
    by_name = {name: targets[sid] for name, sid in _ids(session_factory, cid).items() if sid in targets}
    assert by_name["A1"] == pytest.approx(EXPECTED)
    # No history of its own and too few judged sessions for a prior: the old full-battery plan.
    assert by_name["A2"] == 1.0
    assert fleet.pool_target_soc("cpo:NL-CPA", 10.0) == 1.0

    # Within its time to live, or before it, nothing is read; after it only what completed since, judged once.
    with session_factory() as db:
        cache.get(db, NOW + timedelta(minutes=10))
        cache.get(db, NOW - timedelta(hours=5))
        assert cache.reads == 1
        _finished(session_factory, cid, "F3", "CAR3", NOW - timedelta(hours=3), [11.0, 11.0, 3.0, 0.0])
        again = cache.get(db, NOW + timedelta(minutes=20))
    assert cache.reads == 2
    assert again.judged == 2
    assert again.by_car["token:||car3"] == pytest.approx(0.8 + 0.75 / 60.0)
    assert np.isclose(again.by_car["token:||car1"], EXPECTED)


def _cpo(factory: sessionmaker[Session]) -> str:
    """A CPO with one location of three EVSEs, three days old."""
    cid = add_cpo(factory)
    add_location(factory, cid, location_id="LOC1", evses=3, at=NOW - timedelta(days=3))
    return cid


def _ids(factory: sessionmaker[Session], cid: str) -> dict[str, str]:
    out = {}
    with factory() as db:
        for name in ("A1", "A2"):
            found = sessions.find(db, cid, "NL", "CPA", name)
            assert found is not None
            out[name] = found.id
    return out


def test_the_first_read_judges_only_the_newest_completed_sessions_of_each_cpo(
    session_factory: sessionmaker[Session],
) -> None:
    cid = _cpo(session_factory)
    _finished(session_factory, cid, "F1", "CAR1", NOW - timedelta(days=2), [11.0, 11.0, 6.6, 2.0, 0.0])
    _finished(session_factory, cid, "F3", "CAR3", NOW - timedelta(days=1), [11.0, 11.0, 3.0, 0.0])

    cache = EndSocCache(ttl_seconds=900.0, first_read_per_cpo=1)
    with session_factory() as db:
        first = cache.get(db, NOW)
    # Of the CPO's two, only the one that ended last is judged at the first read.
    assert first.judged == 1
    assert set(first.by_car) == {"token:||car3"}
    # Later reads judge what completed since, whatever the bound.
    _finished(session_factory, cid, "F4", "CAR4", NOW - timedelta(hours=3), [11.0, 11.0, 3.0, 0.0])
    with session_factory() as db:
        later = cache.get(db, NOW + timedelta(minutes=20))
    assert later.judged == 2
    assert set(later.by_car) == {"token:||car3", "token:||car4"}
    # Unbounded, both of the first read's are judged.
    with session_factory() as db:
        assert EndSocCache(ttl_seconds=900.0).get(db, NOW).judged == 3


def test_a_car_that_reports_its_state_of_charge_gets_its_battery_from_its_own_readings(
    session_factory: sessionmaker[Session],
) -> None:
    """An active session whose CPO reports the state of charge but states no battery: 2 kWh a quarter hour from
    20 % to 25 % to 30 % is a 40 kWh battery (4 kWh over 10 points), so its state of charge is 12 kWh; one
    reading with a state of charge, or none, says nothing; V2G still needs a stated battery; a need that ends at
    95 % or more keeps the full-battery assumption."""
    cid = _cpo(session_factory)
    start = NOW - timedelta(minutes=45)
    readings = tuple(Reading(start=start + timedelta(minutes=15 * k), power_kw=8.0, energy_kwh=2.0, soc_pct=soc)
                     for k, soc in enumerate((20.0, 25.0, 30.0)))
    full = tuple(Reading(start=r.start, power_kw=8.0, energy_kwh=2.0, soc_pct=soc + 60.0)
                 for r, soc in zip(readings, (20.0, 25.0, 30.0), strict=True))
    for name, evse, taken in (("L1", 0, readings), ("L2", 1, readings[:1]),
                              ("L3", 2, tuple(Reading(start=r.start, power_kw=8.0, energy_kwh=2.0) for r in readings)),
                              ("L4", 3, full)):
        record = SessionRecord(
            country_code="NL", party_id="CPA", external_id=name, status="active", start=start,
            energy_kwh=2.0 * len(taken), location_id="LOC1", evse_uid=f"LOC1-E{evse}", connector_id="1",
            currency="EUR", last_updated=NOW, driver_token={"uid": name, "type": "RFID"}, readings=taken)
        with unit_of_work(session_factory) as db:
            sessions.replace(db, cid, record)
    with session_factory() as db:
        fleet = load_fleet(db, NOW)
        ids = {name: found.id for name in ("L1", "L2", "L3", "L4")
               if (found := sessions.find(db, cid, "NL", "CPA", name)) is not None}
    row = {sid: k for k, sid in enumerate(fleet.session_ids)}
    assert fleet.battery_kwh[row[ids["L1"]]] == pytest.approx(40.0)
    assert fleet.soc_kwh[row[ids["L1"]]] == pytest.approx(12.0)
    assert np.isnan(fleet.battery_kwh[row[ids["L2"]]]) and np.isnan(fleet.soc_kwh[row[ids["L2"]]])
    assert np.isnan(fleet.battery_kwh[row[ids["L3"]]])
    assert not fleet.v2g_able[row[ids["L1"]]]
    # At 90 % of 40 kWh with the learned need still to take, it ends at 95 % or more: planned full, as before.
    assert fleet.energy_needed_kwh[row[ids["L4"]]] >= 0.05 * 40.0
    assert np.isnan(fleet.battery_kwh[row[ids["L4"]]]) and np.isnan(fleet.soc_kwh[row[ids["L4"]]])
    assert (12.0 + fleet.energy_needed_kwh[row[ids["L1"]]]) / 40.0 < 0.95

    # Read again only after its time to live, and never once final (20 points or more).
    cache = LiveBatteryCache(ttl_seconds=900.0)
    with session_factory() as db:
        assert cache.get(db, [ids["L1"], ids["L2"]], NOW)[0] == pytest.approx(40.0)
        cache.get(db, [ids["L1"], ids["L2"]], NOW + timedelta(minutes=10))
        assert cache.reads == 1
        assert np.isnan(cache.get(db, [ids["L2"]], NOW + timedelta(minutes=20))[0])
        assert cache.reads == 2
