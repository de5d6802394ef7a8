import asyncio
import copy
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.ocpi.v2_2_1 import sync
from adapters.ocpi.v2_2_1.transport import format_datetime
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import T0, connect, minutes, session_body, sim_registers_with_us, world
from vpp.db import unit_of_work
from vpp.locations import service as locations

LOCATION_URL = "/ocpi/2.2.1/locations/NL/CPA/LOC1"


def _connector(connector_id: str = "1", **changes: Any) -> dict[str, Any]:
    return {"id": connector_id, "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
            "max_voltage": 230, "max_amperage": 32, "last_updated": format_datetime(T0), **changes}


def _location(*capabilities: str, connector: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "country_code": "NL", "party_id": "CPA", "id": "LOC1", "publish": True, "address": "Straat 1",
        "city": "Arnhem", "country": "NLD", "coordinates": {"latitude": "51.98", "longitude": "5.91"},
        "time_zone": "Europe/Amsterdam", "last_updated": format_datetime(T0),
        "evses": [{"uid": "EVSE1", "status": "CHARGING", "capabilities": list(capabilities),
                   "connectors": [connector or _connector()], "last_updated": format_datetime(T0)}],
    }


def _cdr(cdr_id: str = "CDR1", **changes: Any) -> dict[str, Any]:
    body = {
        "country_code": "NL", "party_id": "CPA", "id": cdr_id, "start_date_time": format_datetime(T0),
        "end_date_time": format_datetime(T0 + minutes(90)), "session_id": "S1",
        "cdr_token": {"country_code": "NL", "party_id": "EMS", "uid": "U1", "type": "RFID", "contract_id": "C1"},
        "auth_method": "WHITELIST",
        "cdr_location": {"id": "LOC1", "address": "Straat 1", "city": "Arnhem", "country": "NLD",
                         "coordinates": {"latitude": "51.98", "longitude": "5.91"}, "evse_uid": "EVSE1",
                         "evse_id": "NL*CPA*E1", "connector_id": "1", "connector_standard": "IEC_62196_T2",
                         "connector_format": "SOCKET", "connector_power_type": "AC_3_PHASE"},
        "currency": "EUR",
        "charging_periods": [
            {"start_date_time": format_datetime(T0), "dimensions": [{"type": "ENERGY", "volume": 12.5}]}
        ],
        "total_cost": {"excl_vat": 4.38, "incl_vat": 5.3}, "total_energy": 12.5, "total_time": 1.5,
        "last_updated": format_datetime(T0 + minutes(90)),
    }
    body.update(changes)
    return body


def test_a_cdr_post_answers_with_a_location_header_where_the_cdr_can_be_read(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put("/ocpi/2.2.1/sessions/NL/CPA/S1", json=session_body(), headers=peer.headers)
    posted = client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    assert posted.status_code == 201 and "data" not in posted.json()
    location = posted.headers["location"]
    assert location.startswith("http://127.0.0.1:8000/ocpi/2.2.1/cdrs/")
    fetched = client.get(location.removeprefix("http://127.0.0.1:8000"), headers=peer.headers).json()
    assert fetched["data"]["id"] == "CDR1" and fetched["data"]["total_energy"] == 12.5
    again = client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    assert again.status_code == 200 and again.headers["location"] == location
    other = connect(app.state.session_factory, TEST_SECRET, name="other", parties=[("NL", "CPB")])
    assert client.get(location.removeprefix("http://127.0.0.1:8000"), headers=other.headers).status_code == 404


def test_a_credit_cdr_is_linked_to_the_cdr_it_reverses(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    original = client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    credit = _cdr("CDR1-C", credit=True, credit_reference_id="CDR1", total_cost={"excl_vat": -4.38})
    assert client.post("/ocpi/2.2.1/cdrs", json=credit, headers=peer.headers).status_code == 201
    no_reference = client.post("/ocpi/2.2.1/cdrs", json=_cdr("CDR2-C", credit=True), headers=peer.headers)
    assert no_reference.json()["status_code"] == 2001
    from vpp.cdrs.tables import ChargeDetailRecord

    with app.state.session_factory() as session:
        stored = session.get(ChargeDetailRecord, original.headers["location"].rsplit("/", 1)[1])
        assert stored is not None and stored.credited_by is not None


def test_a_cdr_of_another_party_is_refused(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    refused = client.post("/ocpi/2.2.1/cdrs", json=_cdr(party_id="XYZ"), headers=peer.headers)
    assert refused.json()["status_code"] == 2001 and "location" not in refused.headers


def test_locations_give_each_session_its_connector_power_and_capabilities(
    app: FastAPI, client: TestClient, trader_headers: dict[str, str]
) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    assert client.put(LOCATION_URL, json=_location(), headers=peer.headers).status_code == 201
    client.put("/ocpi/2.2.1/sessions/NL/CPA/S1", json=session_body(location_id="loc1", evse_uid="evse1"),
               headers=peer.headers)
    session_id = client.get("/api/v1/sessions", headers=trader_headers).json()["items"][0]["id"]
    connector = client.get(f"/api/v1/sessions/{session_id}", headers=trader_headers).json()["connector"]
    # No max_electric_power: 230 V x 32 A x 3 phases.
    assert connector["max_power_kw"] == 22.08 and connector["power_type"] == "AC_3_PHASE"
    assert connector["charging_profile_capable"] is False
    stamp = format_datetime(T0 + minutes(5))
    capable = {"capabilities": ["CHARGING_PROFILE_CAPABLE"], "last_updated": stamp}
    assert client.patch(LOCATION_URL + "/EVSE1", json=capable, headers=peer.headers).json()["status_code"] == 1000
    limited = {"max_electric_power": 11000, "last_updated": stamp}
    assert client.patch(LOCATION_URL + "/EVSE1/1", json=limited, headers=peer.headers).json()["status_code"] == 1000
    connector = client.get(f"/api/v1/sessions/{session_id}", headers=trader_headers).json()["connector"]
    assert connector["max_power_kw"] == 11.0 and connector["charging_profile_capable"] is True
    assert client.patch(LOCATION_URL + "/EVSE1", json={"status": "AVAILABLE"}, headers=peer.headers).json()[
        "status_code"] == 2001
    evse = client.get(LOCATION_URL + "/evse1", headers=peer.headers).json()["data"]
    assert evse["uid"] == "EVSE1" and evse["capabilities"] == ["CHARGING_PROFILE_CAPABLE"]


def test_evses_and_connectors_can_be_put_on_their_own_and_stale_puts_are_ignored(
    app: FastAPI, client: TestClient
) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(LOCATION_URL, json=_location(), headers=peer.headers)
    evse = copy.deepcopy(_location()["evses"][0]) | {"uid": "EVSE2", "last_updated": format_datetime(T0 + minutes(1))}
    assert client.put(LOCATION_URL + "/EVSE2", json=evse, headers=peer.headers).status_code == 201
    dc = _connector("2", power_type="DC", max_voltage=920, max_amperage=400, max_electric_power=150000)
    assert client.put(LOCATION_URL + "/EVSE2/2", json=dc, headers=peer.headers).status_code == 201
    stale = client.put(LOCATION_URL, json=_location(), headers=peer.headers)
    assert stale.status_code == 200 and "ignored" in stale.json()["status_message"]
    with unit_of_work(app.state.session_factory) as session:
        info = locations.connector_info(session, peer.connection_id, "LOC1", "EVSE2", "2")
    assert info is not None and info.max_power_kw == 150.0 and info.power_type == "DC"
    assert client.put("/ocpi/2.2.1/locations/NL/CPA/NOPE/EVSE9", json=evse | {"uid": "EVSE9"},
                      headers=peer.headers).status_code == 404


def test_locations_and_cdrs_are_pulled_from_the_sim_cpo(app: FastAPI) -> None:
    w = world(app, evses=4, evses_per_location=2, page_limit=1)

    async def run() -> dict[str, Any]:
        connection_id = await sim_registers_with_us(w, TEST_SECRET)
        session = w.sim.plug_in(energy_kwh=5)
        await w.sim.step(600)
        w.sim.unplug(session.id)
        await w.sim.flush()
        counts = await sync.pull_all(w.context, connection_id, http=w.http)
        await w.close()
        return {"counts": counts, "connection_id": connection_id, "evse": session.slot.evse_uid,
                "location": session.slot.location_id}

    result = asyncio.run(run())
    assert result["counts"]["locations"] == {"created": 2}
    assert result["counts"]["cdrs"] == {"known": 1}, "the CDR was pushed at unplug and pulled again"
    with unit_of_work(app.state.session_factory) as session:
        info = locations.connector_info(session, result["connection_id"], result["location"], result["evse"], "1")
    assert info is not None and info.max_power_kw == 11.0 and info.charging_profile_capable and info.phases == 3


def test_a_new_cdr_enqueues_a_settlement_recompute_after_commit_and_a_repeat_does_not(
    app: FastAPI, client: TestClient
) -> None:
    enqueued: list[tuple[str, dict[str, Any]]] = []

    class Recording:
        def enqueue(self, task_name: str, **kwargs: Any) -> None:
            enqueued.append((task_name, kwargs))

    app.state.ocpi_app.state.ocpi.task_queue = Recording()
    peer = connect(app.state.session_factory, TEST_SECRET)
    posted = client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    assert posted.status_code == 201
    client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    cdr_id = posted.headers["location"].rsplit("/", 1)[-1]
    assert [(name, kwargs["cdr_id"]) for name, kwargs in enqueued] == [("settlement.recompute_for_cdr", cdr_id)]
    assert set(enqueued[0][1]) == {"cdr_id", "outbox_id"}
