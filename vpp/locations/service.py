"""Use cases of locations: intake of locations, EVSEs and connectors, and what a session's connector can do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.domain.errors import InvalidInput, NotFound
from vpp.locations.tables import ChargingConnector, ChargingEvse, ChargingLocation
from vpp.locations.values import ConnectorInfo, ConnectorRecord, EvseRecord, LocationRecord

Intake = Literal["created", "updated", "stale"]
PROFILE_CAPABILITY = "CHARGING_PROFILE_CAPABLE"

_LOCATION_FIELDS = frozenset(
    {"publish", "name", "address", "city", "postal_code", "country", "latitude", "longitude", "time_zone"}
)
_EVSE_FIELDS = frozenset({"status", "capabilities", "evse_id"})
_CONNECTOR_FIELDS = frozenset(
    {"power_type", "phases", "max_voltage_v", "max_current_a", "rated_power_kw", "standard", "format"}
)


def max_power_kw(*, rated_power_kw: float | None, voltage_v: int, current_a: int, phases: int) -> float:
    """The rated power if known, else voltage (line-to-neutral for AC) x current x phases."""
    if rated_power_kw is not None and rated_power_kw > 0:
        return rated_power_kw
    return voltage_v * current_a * phases / 1000.0


@dataclass(frozen=True, slots=True)
class LocationTree:
    """A stored location with its EVSEs and their connectors."""

    location: ChargingLocation
    evses: list[tuple[ChargingEvse, list[ChargingConnector]]]


def _party_key(country_code: str, party_id: str) -> str:
    return f"{country_code}/{party_id}".casefold()


def _find_location(
    session: Session, connection_id: str, country_code: str, party_id: str, location_id: str
) -> ChargingLocation | None:
    stmt = select(ChargingLocation).where(
        ChargingLocation.connection_id == connection_id,
        ChargingLocation.party_key == _party_key(country_code, party_id),
        ChargingLocation.external_key == location_id.casefold(),
    )
    return session.scalars(stmt).first()


def _find_evse(session: Session, location_pk: str, evse_uid: str) -> ChargingEvse | None:
    stmt = select(ChargingEvse).where(
        ChargingEvse.location_pk == location_pk, ChargingEvse.uid_key == evse_uid.casefold()
    )
    return session.scalars(stmt).first()


def _find_connector(session: Session, evse_pk: str, connector_id: str) -> ChargingConnector | None:
    stmt = select(ChargingConnector).where(
        ChargingConnector.evse_pk == evse_pk, ChargingConnector.external_key == connector_id.casefold()
    )
    return session.scalars(stmt).first()


def _touch_parents(location: ChargingLocation, evse: ChargingEvse | None, at: datetime) -> None:
    # A child's change updates its parents' last_updated (as the spec asks of the sender too).
    if at > location.last_updated:
        location.last_updated = at
    if evse is not None and at > evse.last_updated:
        evse.last_updated = at


def _apply_connector(row: ChargingConnector, record: ConnectorRecord) -> None:
    row.external_id = record.external_id
    row.power_type = record.power_type
    row.phases = record.phases
    row.max_voltage_v = record.max_voltage_v
    row.max_current_a = record.max_current_a
    row.rated_power_kw = record.rated_power_kw
    row.max_power_kw = max_power_kw(
        rated_power_kw=record.rated_power_kw, voltage_v=record.max_voltage_v, current_a=record.max_current_a,
        phases=record.phases,
    )
    row.standard = record.standard
    row.format = record.format
    row.last_updated = record.last_updated


def _upsert_connector(session: Session, evse: ChargingEvse, record: ConnectorRecord) -> Intake:
    row = _find_connector(session, evse.id, record.external_id)
    if row is None:
        row = ChargingConnector(evse_pk=evse.id, external_key=record.external_id.casefold())
        _apply_connector(row, record)
        session.add(row)
        return "created"
    if record.last_updated < row.last_updated:
        return "stale"
    _apply_connector(row, record)
    return "updated"


def _apply_evse(row: ChargingEvse, record: EvseRecord) -> None:
    row.uid = record.uid
    row.evse_id = record.evse_id
    row.status = record.status
    row.capabilities = list(record.capabilities)
    row.charging_profile_capable = record.charging_profile_capable
    row.last_updated = record.last_updated


def _upsert_evse(session: Session, location: ChargingLocation, record: EvseRecord) -> Intake:
    row = _find_evse(session, location.id, record.uid)
    created = row is None
    if row is None:
        row = ChargingEvse(location_pk=location.id, uid_key=record.uid.casefold())
        _apply_evse(row, record)
        session.add(row)
        session.flush()
    elif record.last_updated < row.last_updated:
        return "stale"
    else:
        _apply_evse(row, record)
    for connector in record.connectors:
        _upsert_connector(session, row, connector)
    return "created" if created else "updated"


def _location_fields(record: LocationRecord) -> dict[str, Any]:
    return {
        "publish": record.publish, "name": record.name, "address": record.address, "city": record.city,
        "postal_code": record.postal_code, "country": record.country, "latitude": record.latitude,
        "longitude": record.longitude, "time_zone": record.time_zone, "last_updated": record.last_updated,
        "external_id": record.external_id,
    }


def put_location(session: Session, connection_id: str, record: LocationRecord) -> Intake:
    """Create or replace a location and upsert the EVSEs and connectors it lists."""
    row = _find_location(session, connection_id, record.country_code, record.party_id, record.external_id)
    created = row is None
    if row is None:
        row = ChargingLocation(
            connection_id=connection_id, country_code=record.country_code, party_id=record.party_id,
            party_key=_party_key(record.country_code, record.party_id),
            external_key=record.external_id.casefold(), **_location_fields(record),
        )
        session.add(row)
        session.flush()
    elif record.last_updated < row.last_updated:
        return "stale"
    else:
        for name, value in _location_fields(record).items():
            setattr(row, name, value)
    for evse in record.evses:
        _upsert_evse(session, row, evse)
    session.flush()
    return "created" if created else "updated"


def _location_or_raise(
    session: Session, connection_id: str, country_code: str, party_id: str, location_id: str
) -> ChargingLocation:
    row = _find_location(session, connection_id, country_code, party_id, location_id)
    if row is None:
        raise NotFound(f"location {country_code}/{party_id}/{location_id} is unknown: PUT it first")
    return row


def _evse_or_raise(session: Session, location: ChargingLocation, evse_uid: str) -> ChargingEvse:
    row = _find_evse(session, location.id, evse_uid)
    if row is None:
        raise NotFound(f"EVSE {evse_uid} of location {location.external_id} is unknown: PUT it first")
    return row


def put_evse(
    session: Session, connection_id: str, country_code: str, party_id: str, location_id: str, record: EvseRecord
) -> Intake:
    """Create or replace an EVSE (and its connectors) of a known location."""
    location = _location_or_raise(session, connection_id, country_code, party_id, location_id)
    outcome = _upsert_evse(session, location, record)
    if outcome != "stale":
        _touch_parents(location, None, record.last_updated)
    session.flush()
    return outcome


def put_connector(
    session: Session, connection_id: str, country_code: str, party_id: str, location_id: str, evse_uid: str,
    record: ConnectorRecord,
) -> Intake:
    """Create or replace a connector of a known EVSE."""
    location = _location_or_raise(session, connection_id, country_code, party_id, location_id)
    evse = _evse_or_raise(session, location, evse_uid)
    outcome = _upsert_connector(session, evse, record)
    if outcome != "stale":
        _touch_parents(location, evse, record.last_updated)
    session.flush()
    return outcome


def _check_fields(fields: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)} of a {what}")


def patch(
    session: Session,
    connection_id: str,
    country_code: str,
    party_id: str,
    location_id: str,
    *,
    fields: dict[str, Any],
    last_updated: datetime,
    evse_uid: str | None = None,
    connector_id: str | None = None,
) -> Intake:
    """Change some fields of a location, EVSE or connector; an older ``last_updated`` changes nothing."""
    location = _location_or_raise(session, connection_id, country_code, party_id, location_id)
    target: ChargingLocation | ChargingEvse | ChargingConnector = location
    evse: ChargingEvse | None = None
    if evse_uid is not None:
        evse = _evse_or_raise(session, location, evse_uid)
        target = evse
        if connector_id is not None:
            connector = _find_connector(session, evse.id, connector_id)
            if connector is None:
                raise NotFound(f"connector {connector_id} of EVSE {evse_uid} is unknown: PUT it first")
            target = connector
    allowed = (
        _CONNECTOR_FIELDS if isinstance(target, ChargingConnector)
        else _EVSE_FIELDS if isinstance(target, ChargingEvse) else _LOCATION_FIELDS
    )
    _check_fields(fields, allowed, type(target).__name__)
    if last_updated < target.last_updated:
        return "stale"
    for name, value in fields.items():
        setattr(target, name, value)
    if isinstance(target, ChargingEvse) and "capabilities" in fields:
        target.charging_profile_capable = PROFILE_CAPABILITY in fields["capabilities"]
    if isinstance(target, ChargingConnector):
        target.max_power_kw = max_power_kw(
            rated_power_kw=target.rated_power_kw, voltage_v=target.max_voltage_v,
            current_a=target.max_current_a, phases=target.phases,
        )
    target.last_updated = last_updated
    _touch_parents(location, evse, last_updated)
    session.flush()
    return "updated"


def get_tree(
    session: Session, connection_id: str, country_code: str, party_id: str, location_id: str
) -> LocationTree:
    """A stored location with its EVSEs and connectors, or NotFound."""
    location = _location_or_raise(session, connection_id, country_code, party_id, location_id)
    evses = list(session.scalars(select(ChargingEvse).where(ChargingEvse.location_pk == location.id)))
    tree: list[tuple[ChargingEvse, list[ChargingConnector]]] = []
    for evse in sorted(evses, key=lambda e: e.uid_key):
        connectors = session.scalars(select(ChargingConnector).where(ChargingConnector.evse_pk == evse.id))
        tree.append((evse, sorted(connectors, key=lambda c: c.external_key)))
    return LocationTree(location, tree)


def connector_info(
    session: Session, connection_id: str, location_id: str, evse_uid: str, connector_id: str
) -> ConnectorInfo | None:
    """Power type, maximum power and steering capability of the connector a session charges at."""
    stmt = (
        select(ChargingConnector, ChargingEvse)
        .join(ChargingEvse, ChargingEvse.id == ChargingConnector.evse_pk)
        .join(ChargingLocation, ChargingLocation.id == ChargingEvse.location_pk)
        .where(
            ChargingLocation.connection_id == connection_id,
            ChargingLocation.external_key == location_id.casefold(),
            ChargingEvse.uid_key == evse_uid.casefold(),
            ChargingConnector.external_key == connector_id.casefold(),
        )
    )
    found = session.execute(stmt).first()
    if found is None:
        return None
    connector, evse = found
    return ConnectorInfo(
        power_type=connector.power_type,
        phases=connector.phases,
        max_voltage_v=connector.max_voltage_v,
        max_current_a=connector.max_current_a,
        max_power_kw=connector.max_power_kw,
        charging_profile_capable=evse.charging_profile_capable,
        capabilities=tuple(evse.capabilities or ()),
    )
