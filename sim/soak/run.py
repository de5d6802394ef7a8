"""``vpp soak``: the stack of deploy/local on its own PostgreSQL and Redis, under load, while things break.

The run: start the servers and the stack (api with several workers, a Celery worker, beat, two dispatchers),
register the simulated CPOs (``sim.cpo``, real OCPI handshakes, cars plugged in) and the CPO whose sessions carry
the fleet's telemetry, give the CPOs' pools an aFRR award, then for N minutes let the TSO post setpoints every
4 s and the CPO push charging periods at the rate of the fleet, while the fault schedule (sim/soak/faults.py)
kills, restarts and misbehaves. Afterwards every acknowledged setpoint and reading is looked up in the database,
the logs are searched for every secret the run handed out, and everything started is stopped and deleted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from nacl.bindings import crypto_sign_keypair
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sim.soak import report
from sim.soak.faults import FaultSchedule
from sim.soak.load import OCPI_PERIOD_S, Ingest, LoopLag, percentile
from sim.soak.services import HOST, LocalPostgres, LocalRedis, ServiceError, free_port, port_open
from sim.soak.stack import Stack, stack_env
from sim.soak.tso_process import TsoProcess
from vpp import aio
from vpp.commitments import service as commitments
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.isp import floor_to_isp
from vpp.keyring import Keyring, generate_key, parse_key
from vpp.observability import freeze_startup_heap
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags, EndpointRef, PartyRole
from vpp.portfolio import topology
from vpp.sessions.tables import ChargingSession

INGEST_PARTY = ("NL", "SOK")


@dataclass
class SoakConfig:
    """The knobs of a soak."""

    minutes: float
    cars: int = 100_000
    ingest_sessions: int = 2000
    cpos: int = 2
    evses_per_cpo: int = 20
    api_workers: int = 2
    market_workers: int = 2  # the market API (the TSO's setpoints) in a process of its own; 0: on the API
    award_mw: float = 0.05
    keep: Path | None = None  # copy the logs here before the run directory is deleted


@dataclass
class SimCpo:
    """A simulated CPO process (sim.cpo) registered with the service."""

    party: str
    port: int
    process: subprocess.Popen[bytes]
    secrets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Its admin and OCPI base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def zone(self) -> str:
        """The bidding zone its locations are put in: one dispatched pool per simulated CPO."""
        return "SOAK" + self.party.split("/")[1]

    @property
    def pool(self) -> str:
        """Its zone pool (the dispatcher dispatches zone pools)."""
        return f"zone:{self.zone}"


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _register_ingest(factory: sessionmaker[Session], secret: str, keyring: Keyring) -> tuple[str, str]:
    """A registered connection for the telemetry CPO (its profile endpoint refuses: it steers nothing)."""
    refused = f"http://{HOST}:{free_port()}/ocpi/2.2.1/chargingprofiles"
    flags = ConnectionFlags(rate_limit_per_s=1e5, rate_limit_burst=1e5)
    with unit_of_work(factory) as session:
        row, _token_a = connections.invite(session, name="soak-telemetry", pepper=secret, flags=flags)
        _row, token = connections.accept_registration(
            session, row.id, pepper=secret, outgoing_token=secrets.token_urlsafe(24), keyring=keyring,
            versions_url=f"http://{HOST}:{free_port()}/ocpi/versions", version="2.2.1",
            endpoints=[EndpointRef("chargingprofiles", "RECEIVER", refused)],
            roles=[PartyRole("CPO", *INGEST_PARTY)],
        )
    return row.id, token


class Soak:
    """One run; ``run()`` returns the report and always cleans up."""

    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.root = Path(tempfile.mkdtemp(prefix="vpp-soak-"))
        self.root.chmod(0o711)  # PostgreSQL's user must reach its own directory inside; nobody may list ours
        self.postgres = LocalPostgres(self.root / "pg")
        self.redis = LocalRedis(self.root / "redis")
        self.secrets: list[str] = []
        self.cpos: list[SimCpo] = []
        self.stack: Stack | None = None

    def run(self) -> dict[str, Any]:
        """Start, load, break, measure, clean up."""
        started = time.time()
        try:
            figures = self._run()
        finally:
            leftovers = self.cleanup()
        figures["left_running"] = leftovers
        figures["wall_s"] = round(time.time() - started, 1)
        figures["goals"] = goals(figures)
        figures["goals_met"] = all(figures["goals"].values())
        return figures

    # ------------------------------------------------------------------------------------------------ set-up

    def _run(self) -> dict[str, Any]:
        self.postgres.start()
        self.redis.start()
        secret = secrets.token_urlsafe(32)
        token_key = generate_key()
        signing_key = base64.b64encode(crypto_sign_keypair()[1]).decode()
        self.secrets += [secret, token_key, signing_key]
        stack = self.stack = Stack(self.root / "stack", {}, api_workers=self.config.api_workers,
                                   market_workers=self.config.market_workers)
        stack.env = stack_env(
            os.environ, VPP_DATABASE_URL=self.postgres.url, VPP_REDIS_URL=self.redis.url, VPP_SECRET_KEY=secret,
            VPP_TOKEN_KEY=token_key, VPP_UFTP_SIGNING_KEY=signing_key, VPP_DATA_DIR=str(self.root / "stack" / "data"),
            VPP_PUBLIC_URL=stack.base_url, VPP_LOG_LEVEL="INFO",
        )
        stack.start()
        engine = create_db_engine(self.postgres.url, pool_size=2)
        try:
            factory = create_session_factory(engine)
            admin = json.loads(stack.vpp("apikey", "create", "--role", "admin", "--name", "soak-admin", "--json"))
            market = json.loads(stack.vpp("apikey", "create", "--role", "market", "--name", "soak-tso", "--json"))
            self.secrets += [admin["key"], market["key"]]
            ingest_connection, ingest_token = _register_ingest(factory, secret, Keyring.of(parse_key(token_key)))
            self.secrets.append(ingest_token)
            for i in range(self.config.cpos):
                self.cpos.append(self._start_cpo(stack, i))
            pools = [cpo.pool for cpo in self.cpos]
            self._zones(factory)
            self._award(factory, pools)
            # The second dispatcher starts once the first holds the pools: it stands by and takes over.
            _wait_for(lambda: _owned(factory, pools), 300, "the first dispatcher's allocations")
            stack.start_dispatcher("dispatcher-b")
            return aio.run(self._soak(stack, factory, market["key"], ingest_token, ingest_connection, pools))
        finally:
            engine.dispose()

    def _start_cpo(self, stack: Stack, i: int) -> SimCpo:
        invited = json.loads(stack.vpp("ocpi", "invite", "--name", f"sim-cpo-{i}", "--json"))
        self.secrets.append(invited["token_a"])
        party = f"NL/S{chr(ord('A') + i)}C"
        port = free_port()
        (self.root / "cpos").mkdir(exist_ok=True)
        with (self.root / "cpos" / f"cpo-{i}.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (our interpreter, our module)
                [sys.executable, "-m", "sim.cpo", "--port", str(port), "--party", party,
                 "--evses", str(self.config.evses_per_cpo), "--seed", str(11 + i), "--no-arrivals",
                 "--scsp-versions-url", invited["versions_url"], "--scsp-token-a", invited["token_a"]],
                env=stack.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        cpo = SimCpo(party=party, port=port, process=process)
        _wait_for(lambda: httpx.get(f"{cpo.url}/admin/state", timeout=5).json()["connections"], 300,
                  f"{party}'s OCPI handshake")
        for _ in range(self.config.evses_per_cpo):
            httpx.post(f"{cpo.url}/admin/sessions", json={"energy_kwh": 40, "connection_hours": 10},
                       timeout=10).raise_for_status()
        state = httpx.get(f"{cpo.url}/admin/state", timeout=5).json()
        cpo.secrets = list(state["token_a"])
        return cpo

    def _zones(self, factory: sessionmaker[Session]) -> None:
        """Once each simulated CPO's sessions are in, put its locations on a site of a zone of its own."""
        for cpo in self.cpos:
            cc, pid = cpo.party.split("/")

            def locations(cc: str = cc, pid: str = pid) -> list[str]:
                with unit_of_work(factory) as session:
                    rows = session.execute(
                        select(ChargingSession.location_id, func.count())
                        .where(ChargingSession.country_code == cc, ChargingSession.party_id == pid)
                        .group_by(ChargingSession.location_id)).all()
                return [r[0] for r in rows] if sum(r[1] for r in rows) >= self.config.evses_per_cpo else []

            found = _wait_for(locations, 300, f"{cpo.party}'s sessions")
            with unit_of_work(factory) as session:
                site = f"soak-{pid.lower()}"
                topology.upsert_site(session, site_id=site, bidding_zone=cpo.zone)
                for location in found:
                    topology.assign_location(session, site_id=site, party=cpo.party, location_id=location)

    def _award(self, factory: sessionmaker[Session], pools: list[str]) -> None:
        """An aFRR capacity award up and down for every CPO pool over the whole run."""
        isp = floor_to_isp(datetime.now(UTC))
        isps = int(self.config.minutes // 15) + 3
        with unit_of_work(factory) as session:
            commitments.record(session, [
                CommitmentValue(pool=pool, isp_start=isp + timedelta(minutes=15 * k), kind=kind,
                                power_kw=self.config.award_mw * 1000, source="soak", reference="soak-award")
                for pool in pools for k in range(isps)
                for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN)
            ])

    # ------------------------------------------------------------------------------------------------ the soak

    async def _soak(self, stack: Stack, factory: sessionmaker[Session], market_key: str, ingest_token: str,
                    ingest_connection: str, pools: list[str]) -> dict[str, Any]:
        rate = self.config.cars / OCPI_PERIOD_S
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10, limits=limits) as cpo_http:
            # The TSO posts from a process of its own, as a TSO would: not behind this process's CPO load.
            tso = TsoProcess(stack.market_url, market_key, pools, capacity_mw=self.config.award_mw,
                             env=dict(stack.env))
            ingest = Ingest(cpo_http, ingest_token, INGEST_PARTY, sessions=self.config.ingest_sessions, rate=rate)
            # Whole seconds: the periods' start times are compared with what the database stored.
            begin = datetime.now(UTC).replace(microsecond=0) - timedelta(
                seconds=max(round(self.config.ingest_sessions / rate), 1))
            await ingest.put_sessions(begin)
            schedule = FaultSchedule(stack, self.postgres, self.redis, self.cpos, factory, pools, tso,
                                     seconds=self.config.minutes * 60)
            stop = asyncio.Event()
            # The load generator's own full collections would stall the CPO's requests and the fault schedule.
            freeze_startup_heap()
            # The run's clock starts once the TSO's process has started (35 s at load 14), as the CPO's load does.
            await tso.start(first_seq=int(time.time()))
            soak_start = time.time()
            lag = LoopLag()
            loads = [asyncio.create_task(tso.run(stop)),
                     asyncio.create_task(ingest.run(stop, begin)), asyncio.create_task(lag.run(stop))]
            try:
                await schedule.run()
            finally:
                stop.set()
                await asyncio.gather(*loads, return_exceptions=True)
            soak_end = time.time()
        # The last cycles record what they sent, then the stack stops as deploy/local stops it.
        await asyncio.sleep(2 * STEP_PAUSE_S)
        exits = await asyncio.to_thread(stack.stop)
        self.secrets += await asyncio.to_thread(_outgoing_tokens, factory, stack.env["VPP_TOKEN_KEY"])
        with unit_of_work(factory) as session:
            figures = {
                **report.setpoint_figures(session, tso.sent, schedule.windows, soak_start),
                **report.reading_figures(session, ingest.stats, ingest_connection),
                **report.dispatch_figures(session, pools, soak_start + 5, soak_end, schedule.kills),
            }
        if self.config.keep is not None:
            self._keep_samples(tso, lag, soak_start)
        return {
            "minutes": self.config.minutes,
            "cars": self.config.cars,
            "ingest_rate_offered_per_s": round(rate, 1),
            "ingest_sessions": self.config.ingest_sessions,
            "simulated_cpos": len(self.cpos),
            "api_workers": self.config.api_workers,
            "market_workers": self.config.market_workers,
            "dispatchers": 2,
            **figures,
            "faults": [{"name": w.name, "at_s": round(w.start - soak_start, 1),
                        "disturbed_s": round(w.end - w.start, 1), **w.detail} for w in schedule.windows],
            "exit_codes": exits,
            "secrets_in_logs": self.secrets_in_logs(),
            "soak_loop_lag_p99_ms": percentile(lag.lags_ms, 0.99),
            "soak_loop_lag_max_ms": round(max(lag.lags_ms), 1) if lag.lags_ms else None,
            "load_1m": round(os.getloadavg()[0], 2),
        }

    def _keep_samples(self, tso: TsoProcess, lag: LoopLag, origin: float) -> None:
        """Every setpoint the TSO sent (its request id is ``tso-<pool>-<seq>`` in the service's access log) and the
        soak loop's late wake-ups, next to the kept logs."""
        assert self.config.keep is not None
        with contextlib.suppress(OSError):
            self.config.keep.mkdir(parents=True, exist_ok=True)
            samples = {"origin": origin, "setpoints": [vars(s) for s in tso.sent], "loop_late": lag.late}
            (self.config.keep / "samples.json").write_text(json.dumps(samples))

    # ------------------------------------------------------------------------------------------------ after

    def service_logs(self) -> list[Path]:
        """The logs of the service's processes (api, worker, beat, the dispatchers)."""
        return sorted(self.stack.logs.glob("*.log")) if self.stack is not None else []

    def other_logs(self) -> list[Path]:
        """The logs of the outside world: the simulated CPOs, PostgreSQL and Redis."""
        service = set(self.service_logs())
        return [p for p in sorted(self.root.rglob("*.log")) if p.is_file() and p not in service]

    def known_secrets(self) -> list[str]:
        """Every secret the run handed out or read back: the service's keys, the API keys, every token A, the
        token issued to the telemetry CPO and the tokens the service presents to the CPOs (decrypted)."""
        return sorted({*self.secrets, *(x for c in self.cpos for x in c.secrets)})

    def secrets_in_logs(self) -> int:
        """How many lines of the service's logs carry a secret of the run (the secrets are never reported).

        The simulated CPOs' own logs are theirs, not the service's, and are not searched.
        """
        return lines_with_secrets(self.service_logs(), self.known_secrets())

    def cleanup(self) -> list[str]:
        """Stop everything this run started, delete its directory; what still runs or listens afterwards."""
        if self.config.keep is not None:
            with contextlib.suppress(OSError):
                (self.config.keep / "outside").mkdir(parents=True, exist_ok=True)
                for path in self.service_logs():
                    shutil.copy(path, self.config.keep / path.name)
                for path in self.other_logs():
                    shutil.copy(path, self.config.keep / "outside" / path.name)
        for cpo in self.cpos:
            if cpo.process.poll() is None:
                cpo.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    cpo.process.wait(timeout=10)
            if cpo.process.poll() is None:
                cpo.process.kill()
                cpo.process.wait(timeout=5)
        pids = []
        if self.stack is not None:
            self.stack.stop(timeout_s=20)
            self.stack.cleanup()
            pids = [p.pid for p in self.stack.processes.values()]
        self.redis.cleanup()
        self.postgres.cleanup()
        leftovers = [f"pid {pid}" for pid in [*pids, *(c.process.pid for c in self.cpos)]
                     if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
        ports = [self.postgres.port, self.redis.port, *(c.port for c in self.cpos)]
        if self.stack is not None:
            ports += [self.stack.api_port, *self.stack.metrics_ports.values()]
            if self.stack.market_workers:
                ports.append(self.stack.market_port)
        leftovers += [f"port {port}" for port in ports if port_open(port)]
        shutil.rmtree(self.root, ignore_errors=True)
        return leftovers


STEP_PAUSE_S = 4.0


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _outgoing_tokens(factory: sessionmaker[Session], token_key: str) -> list[str]:
    """The tokens the service presents to its peers, decrypted (to look for them in the logs)."""
    from vpp.ocpi.tables import OcpiConnection

    keyring = Keyring.of(parse_key(token_key))
    with unit_of_work(factory) as session:
        sealed = session.scalars(select(OcpiConnection.outgoing_token_sealed)
                                 .where(OcpiConnection.outgoing_token_sealed.is_not(None))).all()
    return [keyring.open(s) for s in sealed if s]


def _owned(factory: sessionmaker[Session], pools: list[str]) -> bool:
    from vpp.activations.tables import DispatchAllocation

    with unit_of_work(factory) as session:
        count = session.scalar(select(func.count(func.distinct(DispatchAllocation.pool)))
                               .where(DispatchAllocation.pool.in_(pools)))
    return (count or 0) >= len(pools)


def lines_with_secrets(paths: list[Path], secrets_: list[str]) -> int:
    """Lines of ``paths`` that carry one of ``secrets_`` as is or Base64-encoded (as OCPI sends tokens)."""
    known = [s for s in secrets_ if len(s) >= 8]
    needles = [*known, *(base64.b64encode(s.encode()).decode() for s in known)]
    hits = 0
    for path in paths:
        with path.open(errors="replace") as lines:
            hits += sum(1 for line in lines if any(n in line for n in needles))
    return hits


def goals(figures: dict[str, Any]) -> dict[str, bool]:
    """The issue's goals, one by one."""
    takeover = figures.get("lease_takeover_max_s")
    p99 = figures.get("ack_p99_ms")
    return {
        "nothing_acknowledged_lost": figures.get("setpoints_lost") == 0 and figures.get("readings_lost") == 0,
        "no_profile_sent_twice": figures.get("profiles_sent_twice") == 0,
        "pool_reowned_within_10_s": takeover is not None and takeover <= 10.0,
        "ack_p99_under_100_ms_outside_faults": p99 is not None and p99 < 100.0,
        "no_secret_in_logs": figures.get("secrets_in_logs") == 0,
        "nothing_left_running": not figures.get("left_running"),
    }


def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Run a soak and return its report."""
    return Soak(config).run()
