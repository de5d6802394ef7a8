"""A small settled day: three sessions of one CPO pool with readings, CDRs, a schedule and an aFRR activation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.portfolio_support import add_cpo, add_location
from vpp.activations.tables import PoolResponse
from vpp.cdrs import service as cdrs
from vpp.cdrs.values import CdrRecord
from vpp.commitments import service as commitments
from vpp.db import new_id, unit_of_work
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.sessions import service as sessions
from vpp.sessions.values import Reading, SessionRecord

DAY = date(2025, 3, 4)
POOL = "cpo:NL-CPA"
TZ = "Europe/Amsterdam"
DAY_START = datetime(2025, 3, 3, 23, 0, tzinfo=UTC)
ACTIVATION_START = DAY_START + timedelta(hours=10)
NOW = datetime(2025, 3, 6, tzinfo=UTC)


@dataclass
class SettlementDay:
    """Ids of what was built."""

    connection_id: str
    session_ids: list[str]


def _session(db: Session, connection_id: str, external: str, evse: int, start: datetime, hours: int,
             kw: float, *, gap_at: int | None = None) -> str:
    readings = []
    for k in range(hours * 4):
        if gap_at is not None and k == gap_at:
            readings.append(Reading(start=start + timedelta(minutes=15 * k), power_kw=None, energy_kwh=None))
            continue
        power = kw * 0.5 if start + timedelta(minutes=15 * k) >= ACTIVATION_START and \
            start + timedelta(minutes=15 * k) < ACTIVATION_START + timedelta(hours=1) else kw
        readings.append(Reading(start=start + timedelta(minutes=15 * k), power_kw=power, energy_kwh=power * 0.25))
    end = start + timedelta(hours=hours)
    record = SessionRecord(
        country_code="NL", party_id="CPA", external_id=external, status="completed", start=start,
        energy_kwh=sum(r.energy_kwh or 0.0 for r in readings), location_id="LOC1", evse_uid=f"LOC1-E{evse}",
        connector_id="1", currency="EUR", last_updated=end, end=end, driver_token={"uid": "T", "type": "RFID"},
        readings=tuple(readings),
    )
    sessions.replace(db, connection_id, record)
    found = sessions.find(db, connection_id, "NL", "CPA", external)
    assert found is not None
    return found.id


def add_cdr(factory: sessionmaker[Session], connection_id: str, external_session: str, energy_kwh: float,
            start: datetime, hours: int, cdr_id: str | None = None) -> str:
    """A CDR for a session; returns its id."""
    with unit_of_work(factory) as db:
        row, _created = cdrs.receive(db, connection_id, CdrRecord(
            country_code="NL", party_id="CPA", external_id=cdr_id or f"CDR-{external_session}", start=start,
            end=start + timedelta(hours=hours), energy_kwh=energy_kwh, total_time_h=hours, currency="EUR",
            total_cost_excl_vat=1.0, last_updated=start + timedelta(hours=hours), location_id="LOC1",
            evse_uid="LOC1-E0", connector_id="1", session_external_id=external_session))
        return row.id


def build_day(factory: sessionmaker[Session], *, with_gap: bool = True, with_cdrs: bool = True) -> SettlementDay:
    """Three sessions 09:00-13:00 UTC+1 at 11 kW, halved during a one-hour upward activation at 11:00 local.

    Session S3 misses one reading (a meter gap); S2's CDR is 5 kWh off (a mismatch).
    """
    connection_id = add_cpo(factory)
    add_location(factory, connection_id, location_id="LOC1", evses=3, at=DAY_START)
    start = DAY_START + timedelta(hours=9)
    ids = []
    with unit_of_work(factory) as db:
        for k in range(3):
            ids.append(_session(db, connection_id, f"S{k + 1}", k, start, 4, 11.0,
                                gap_at=6 if (with_gap and k == 2) else None))
        schedule = [CommitmentValue(pool=POOL, isp_start=DAY_START + timedelta(minutes=15 * i),
                                    kind=CommitmentKind.DAY_AHEAD_SCHEDULE, power_kw=33.0, source="test",
                                    reference="da-1") for i in range(36, 52)]
        capacity = [CommitmentValue(pool=POOL, isp_start=DAY_START + timedelta(minutes=15 * i),
                                    kind=CommitmentKind.AFRR_CAPACITY_UP, power_kw=20.0, source="afrr",
                                    reference="afrr-1", price_eur_per_mwh=150.0) for i in range(40, 44)]
        commitments.record(db, schedule + capacity)
        rows = []
        for step in range(900):
            at = ACTIVATION_START + timedelta(seconds=4 * step)
            rows.append({"id": new_id(), "pool": POOL, "at": at, "requested_mw": 0.0165, "supplied_mw": 0.0165,
                         "target_kw": 16.5, "measured_kw": 16.5, "baseline_kw": 33.0, "supplied_kw": -16.5})
        db.execute(insert(PoolResponse), rows)
    if with_cdrs:
        for k in range(3):
            energy = 11.0 * 3 + 5.5 + (5.0 if k == 1 else 0.0)
            add_cdr(factory, connection_id, f"S{k + 1}", energy, start, 4)
    return SettlementDay(connection_id, ids)
