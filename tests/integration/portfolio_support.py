"""Builds a small fleet in the database through the same services OCPI intake uses."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from vpp.db import unit_of_work
from vpp.locations import service as locations
from vpp.locations.values import ConnectorRecord, EvseRecord, LocationRecord
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags
from vpp.ocpi.tables import OcpiConnection
from vpp.sessions import service as sessions
from vpp.sessions.values import Reading, SessionRecord


def add_cpo(factory: sessionmaker[Session], *, name: str = "cpo-a", discharge_profiles: bool = False) -> str:
    """A registered connection; returns its id."""
    with unit_of_work(factory) as db:
        row, _token = connections.invite(db, name=name, pepper="p",
                                         flags=ConnectionFlags(discharge_profiles=discharge_profiles))
        row.status = "registered"
        return row.id


def add_location(factory: sessionmaker[Session], connection_id: str, *, location_id: str, evses: int,
                 max_current_a: int = 16, v2g: bool = False, party: str = "NL/CPA", at: datetime) -> None:
    """A location with ``evses`` AC three-phase EVSEs of one connector each."""
    country, party_id = party.split("/")
    capabilities = ("CHARGING_PROFILE_CAPABLE", "V2G_CAPABLE") if v2g else ("CHARGING_PROFILE_CAPABLE",)
    record = LocationRecord(
        country_code=country, party_id=party_id, external_id=location_id, publish=True, address="Street 1",
        city="Utrecht", country="NLD", latitude="52.09", longitude="5.12", time_zone="Europe/Amsterdam",
        last_updated=at,
        evses=tuple(
            EvseRecord(uid=f"{location_id}-E{k}", status="AVAILABLE", capabilities=capabilities,
                       charging_profile_capable=True, last_updated=at,
                       connectors=(ConnectorRecord(external_id="1", power_type="AC_3_PHASE", phases=3,
                                                   max_voltage_v=230, max_current_a=max_current_a,
                                                   rated_power_kw=None, standard="IEC_62196_T2", format="SOCKET",
                                                   last_updated=at),))
            for k in range(evses)
        ),
    )
    with unit_of_work(factory) as db:
        locations.put_location(db, connection_id, record)


def add_session(factory: sessionmaker[Session], connection_id: str, *, session_id: str, location_id: str,
                evse: int, start: datetime, delivered_kwh: float = 0.0, power_kw: float | None = None,
                soc_pct: float | None = None, token_uid: str = "TOKEN", party: str = "NL/CPA",
                status: str = "active", end: datetime | None = None) -> str:
    """A session (with one reading when power is given); returns our id for it."""
    country, party_id = party.split("/")
    readings = (Reading(start=start, power_kw=power_kw, energy_kwh=delivered_kwh, soc_pct=soc_pct),) \
        if power_kw is not None else ()
    record = SessionRecord(
        country_code=country, party_id=party_id, external_id=session_id, status=status, start=start,
        energy_kwh=delivered_kwh, location_id=location_id, evse_uid=f"{location_id}-E{evse}", connector_id="1",
        currency="EUR", last_updated=end or start + timedelta(minutes=1), end=end,
        driver_token={"uid": token_uid, "type": "RFID"}, readings=readings,
    )
    with unit_of_work(factory) as db:
        sessions.replace(db, connection_id, record)
        found = sessions.find(db, connection_id, country, party_id, session_id)
        assert found is not None
        return found.id


def connection(factory: sessionmaker[Session], connection_id: str) -> OcpiConnection:
    """The stored connection row."""
    with factory() as db:
        row = db.get(OcpiConnection, connection_id)
        assert row is not None
        return row
