"""The API contract, fuzzed: schemathesis against ``vpp serve`` on PostgreSQL, once with each role's key.

Every check, every phase (examples, coverage, fuzzing, stateful over the document's links); any finding fails.
``VPP_CONTRACT_EXAMPLES`` sets the examples per operation (a quick 15 by default; the full run is 100:
``VPP_CONTRACT_EXAMPLES=100 .venv/bin/python -m pytest tests/e2e/test_api_contract.py``), ``VPP_CONTRACT_SEED``
the seed (fixed by default, so a failure in CI reproduces). What the document cannot state (rules between two
fields, or against stored state and the clock) is listed per operation in ``tests/e2e/schemathesis.toml``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from nacl.bindings import crypto_sign_keypair

from tests.conftest import _fresh_postgres_database, require_service
from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp import migrate
from vpp.apikeys import service as apikeys
from vpp.db import create_db_engine, create_session_factory, unit_of_work

ROLES = ("admin", "trader", "market", "dso", "partner")
# admin and trader may call (nearly) everything; the narrow roles are fuzzed on their own operations (that every
# other operation answers them 403 is tested in tests/integration/test_foundation_api.py and per feature).
OWN_OPERATIONS = {
    "market": ("submit_afrr_setpoint", "get_afrr_response", "get_live_activations", "stream_live_activations"),
    "dso": ("submit_dso_limit", "submit_device_curtailment", "check_counterparty_settlement"),
    "partner": ("put_charging_need", "get_charging_need", "put_booking"),
}
EVERYONE = ("get_ui_principal", "health", "metrics", "uftp_receive_message")
NO_LINKS = {"dso"}  # its operations link only to the trader's: no stateful phase
EXAMPLES = int(os.environ.get("VPP_CONTRACT_EXAMPLES", "15"))
SEED = os.environ.get("VPP_CONTRACT_SEED", "17")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SECRET = "contract-test-secret"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass(frozen=True)
class Service:
    base: str
    keys: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(database_url: str) -> dict[str, str]:
    """A migrated database with a CPO, a location and three sessions (so the links reach sessions), and keys."""
    engine = create_db_engine(database_url, pool_size=2)
    try:
        migrate.upgrade(engine)
        factory = create_session_factory(engine)
        now = datetime.now(UTC).replace(microsecond=0)
        cpo = add_cpo(factory)
        add_location(factory, cpo, location_id="LOC1", evses=3, at=now - timedelta(days=1))
        for k in range(3):
            add_session(factory, cpo, session_id=f"S{k}", location_id="LOC1", evse=k,
                        start=now - timedelta(hours=2), power_kw=7.0, delivered_kwh=3.0)
        with unit_of_work(factory) as db:
            return {role: apikeys.create(db, name=f"contract {role}", role=role, pepper=SECRET)[1] for role in ROLES}
    finally:
        engine.dispose()


@contextmanager
def _serve(database_url: str, data_dir: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
    env.update({
        "VPP_DATABASE_URL": database_url, "VPP_SECRET_KEY": SECRET, "VPP_DATA_DIR": str(data_dir),
        "VPP_UFTP_SIGNING_KEY": base64.b64encode(crypto_sign_keypair()[1]).decode("ascii"),
        "VPP_LOG_FORMAT": "json", "VPP_LOG_LEVEL": "WARNING",
    })
    log = data_dir / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "vpp.cli", "serve", "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, f"vpp serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "vpp serve did not start"
            time.sleep(0.3)
        yield base, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``vpp serve`` (production mode: PostgreSQL, in-process task queue) on a fresh, seeded database."""
    databases = _fresh_postgres_database(require_service("VPP_TEST_DATABASE_URL", "PostgreSQL"))
    database_url = next(databases)
    try:
        keys = _seed(database_url)
        with _serve(database_url, tmp_path_factory.mktemp("contract")) as (base, log):
            yield Service(base=base, keys=keys, log=log)
    finally:
        databases.close()


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_nothing_to_report_with_the_key_of(role: str, service: Service, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    report = tmp_path / "report.json"
    selection = [arg for op in (*OWN_OPERATIONS[role], *EVERYONE) for arg in ("--include-operation-id", op)] \
        if role in OWN_OPERATIONS else []
    if role in NO_LINKS:
        selection += ["--phases", "examples,coverage,fuzzing"]
    started = time.monotonic()
    result = subprocess.run(
        [str(schemathesis), "--config-file", str(CONFIG), "run", f"{service.base}/openapi.json",
         "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", SEED, "--no-color",
         # schemathesis's default is 10 s; the service shares the machine with the other xdist worker's tests
         "--request-timeout", "30",
         "--header", f"Authorization: Bearer {service.keys[role]}",
         "--report", "json", "--report-json-path", str(report), *selection],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,  # its cache stays out of the tree
    )
    elapsed = time.monotonic() - started
    summary = result.stdout[result.stdout.rfind("SUMMARY"):] if "SUMMARY" in result.stdout else result.stdout[-3000:]
    print(f"schemathesis as {role}: {EXAMPLES} examples per operation, {elapsed:.0f} s\n{summary}")
    assert result.returncode == 0, f"schemathesis found problems as {role}:\n{result.stdout[-12000:]}{result.stderr}"
    assert role in NO_LINKS or "Stateful" in result.stdout, "the stateful phase did not run"


def test_the_stateful_phase_follows_links_to_bids_sessions_and_settlement_days(service: Service) -> None:
    doc = httpx.get(f"{service.base}/openapi.json").json()
    targets = {
        link["operationId"]
        for item in doc["paths"].values() for op in item.values()
        for response in op.get("responses", {}).values() for link in response.get("links", {}).values()
    }
    assert {"get_bid", "submit_bid", "get_session", "get_charging_need", "get_settlement_day",
            "get_settlement_rows", "get_ocpi_connection", "revoke_api_key"} <= targets
    listed = httpx.get(f"{service.base}/api/v1/sessions",
                       headers={"Authorization": f"Bearer {service.keys['trader']}"}).json()
    assert listed["total"] == 3, "the seeded sessions are what the list_sessions -> get_session link follows"
    assert json.dumps(doc).count('"$response.body#/items/0/id"') == 3
