"""Two writers storing the same pulled page: the loser stores it again and updates instead of failing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.ocpi.v2_2_1 import sync
from adapters.ocpi.v2_2_1.context import OcpiContext
from vpp.db import unit_of_work
from vpp.locations import service as locations
from vpp.locations.tables import ChargingLocation
from vpp.locations.values import LocationRecord
from vpp.ocpi import service as connections
from vpp.ocpi.settings import OcpiSettings


def _record(external_id: str) -> LocationRecord:
    return LocationRecord(
        country_code="NL", party_id="CPA", external_id=external_id, publish=True, name=external_id,
        address="Straat 1", city="Utrecht", postal_code="3511AA", country="NLD", latitude="52.09",
        longitude="5.12", time_zone="Europe/Amsterdam", last_updated=datetime(2026, 11, 27, 12, tzinfo=UTC),
        evses=(),
    )


def test_a_page_whose_objects_a_concurrent_pull_inserted_first_is_stored_again(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    with unit_of_work(session_factory) as session:
        row, _token = connections.invite(session, name="cpo", pepper="p" * 32)
        connection_id = row.id
    context = OcpiContext(session_factory=session_factory, public_url="http://scsp.example", pepper="p" * 32,
                          settings=OcpiSettings())
    raced: list[str] = []
    find = locations._find_location

    def find_before_the_other_commits(*args: Any) -> Any:
        found = find(*args)
        if not raced:
            # Our read saw nothing; the other writer commits the same location before our insert.
            raced.append(args[-1])
            with unit_of_work(session_factory) as other:
                locations.put_location(other, connection_id, _record(args[-1]))
        return found

    monkeypatch.setattr(locations, "_find_location", find_before_the_other_commits)

    def store(args: Any) -> str:
        session, record = args
        return locations.put_location(session, connection_id, record)

    counts = sync._store_page(context, store, [_record("LOC1"), _record("LOC2")])
    assert raced == ["LOC1"] and counts == {"updated": 1, "created": 1}
    with unit_of_work(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(ChargingLocation)) == 2
