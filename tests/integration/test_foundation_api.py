from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vpp.api.app import create_app
from vpp.apikeys.tables import ApiKey
from vpp.config import Settings
from workers.schedule import periodic_jobs


def _count_keys(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def test_health_reports_database_and_broker(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"]


def test_health_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1",
        secret_key="x",  # type: ignore[arg-type]
    )
    with TestClient(create_app(settings, background=False)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"]["ok"] is False


def test_health_is_503_when_the_broker_is_down(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0", secret_key="x")  # type: ignore[arg-type]
    with TestClient(create_app(settings, background=False)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert response.json()["database"]["ok"] is True


def test_metrics_count_requests_per_route_template(client: TestClient, admin_headers: dict[str, str]) -> None:
    client.get("/health")
    client.delete("/api/v1/apikeys/doesnotexist", headers=admin_headers)
    text = client.get("/metrics").text
    assert 'vpp_http_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'route="/api/v1/apikeys/{key_id}",status="404"' in text
    assert "vpp_http_request_duration_seconds_bucket" in text


def test_request_ids_are_echoed_or_minted(client: TestClient) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    minted = client.get("/health")
    assert len(minted.headers["x-request-id"]) == 32


def test_no_key_is_401_and_a_trader_key_on_an_admin_route_is_403(
    client: TestClient, trader_headers: dict[str, str]
) -> None:
    missing = client.get("/api/v1/apikeys")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = client.get("/api/v1/apikeys", headers={"Authorization": "Bearer vpp_nope_nope"})
    assert wrong.status_code == 401
    forbidden = client.get("/api/v1/apikeys", headers=trader_headers)
    assert forbidden.status_code == 403
    assert "trader" in forbidden.json()["error"]["message"]


def test_admin_creates_lists_and_revokes_keys_and_a_revoked_key_stops_working(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/v1/apikeys", json={"name": "desk", "role": "trader"}, headers=admin_headers)
    assert created.status_code == 201
    new_key = created.json()["key"]
    listed = client.get("/api/v1/apikeys", headers=admin_headers).json()
    assert {k["name"] for k in listed} >= {"desk"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    trader = {"Authorization": f"Bearer {new_key}"}
    assert client.get("/api/v1/apikeys", headers=trader).status_code == 403
    revoked = client.delete(f"/api/v1/apikeys/{created.json()['id']}", headers=admin_headers)
    assert revoked.status_code == 200
    assert client.get("/api/v1/apikeys", headers=trader).status_code == 401
    again = client.delete(f"/api/v1/apikeys/{created.json()['id']}", headers=admin_headers)
    assert again.status_code == 409


def test_keys_are_stored_hashed(client: TestClient, admin_headers: dict[str, str],
                                session_factory: sessionmaker[Session]) -> None:
    key = client.post("/api/v1/apikeys", json={"name": "h", "role": "dso"}, headers=admin_headers).json()["key"]
    with session_factory() as session:
        hashes = list(session.scalars(select(ApiKey.secret_hash)))
    assert all(key.split("_", 2)[2] not in h for h in hashes)


def test_bad_input_gets_a_clear_error_and_writes_nothing(
    client: TestClient, admin_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    before = _count_keys(session_factory)
    malformed = client.post(
        "/api/v1/apikeys", content=b'{"name": ', headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    wrong_type = client.post("/api/v1/apikeys", json={"name": "x", "role": "king"}, headers=admin_headers)
    assert wrong_type.status_code == 422
    assert "role" in wrong_type.json()["error"]["message"]
    extra = client.post("/api/v1/apikeys", json={"name": "x", "role": "dso", "evil": 1}, headers=admin_headers)
    assert extra.status_code == 422
    assert _count_keys(session_factory) == before


def test_unknown_routes_get_a_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no route GET /api/v1/nothing-here"


def test_metrics_give_the_schedule_interval_of_every_periodic_job(client: TestClient) -> None:
    text = client.get("/metrics").text
    jobs = periodic_jobs(client.app.state.settings)  # type: ignore[attr-defined]
    assert jobs
    for job in jobs:
        assert f'vpp_job_interval_seconds{{job="{job.task_name}"}} {float(job.every_seconds)}' in text
    assert 'vpp_job_interval_seconds{job="settlement.settle_day"} 3600.0' in text
