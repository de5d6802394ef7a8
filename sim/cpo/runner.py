"""Serve a simulated CPO with uvicorn (what ``vpp sim cpo`` calls)."""

from __future__ import annotations

import logging

import uvicorn

from sim.cpo.app import create_cpo_app, fast_app
from sim.cpo.config import CpoConfig
from sim.cpo.faults import FaultConfig

logger = logging.getLogger(__name__)


def build_config(
    port: int = 8801,
    party: str = "NL/CPA",
    evses: int = 10,
    *,
    host: str = "127.0.0.1",
    public_url: str | None = None,
    max_kw: float = 11.0,
    dc: bool = False,
    v2g: bool = False,
    speed: float = 1.0,
    token_a: str | None = None,
    seed: int | None = None,
    auto_arrivals: bool = True,
    scsp_versions_url: str | None = None,
    scsp_token_a: str | None = None,
    faults: FaultConfig | None = None,
) -> CpoConfig:
    """The CpoConfig run_cpo would use (real-time ticking on)."""
    return CpoConfig(
        party=party,
        base_url=public_url or f"http://{host}:{port}",
        token_a=token_a,
        evses=evses,
        max_kw=max_kw,
        power_type="DC" if dc else "AC_3_PHASE",
        v2g=v2g,
        seed=seed,
        auto_arrivals=auto_arrivals,
        realtime=True,
        speed=speed,
        register_with_url=scsp_versions_url,
        register_with_token=scsp_token_a,
        faults=faults or FaultConfig(),
    )


def run_cpo(
    port: int = 8801,
    party: str = "NL/CPA",
    evses: int = 10,
    *,
    host: str = "127.0.0.1",
    public_url: str | None = None,
    max_kw: float = 11.0,
    dc: bool = False,
    v2g: bool = False,
    speed: float = 1.0,
    token_a: str | None = None,
    seed: int | None = None,
    auto_arrivals: bool = True,
    scsp_versions_url: str | None = None,
    scsp_token_a: str | None = None,
    faults: FaultConfig | None = None,
    log_level: str = "info",
) -> None:
    """Serve a simulated CPO on ``host:port`` until interrupted; prints its versions URL and token A."""
    config = build_config(
        port,
        party,
        evses,
        host=host,
        public_url=public_url,
        max_kw=max_kw,
        dc=dc,
        v2g=v2g,
        speed=speed,
        token_a=token_a,
        seed=seed,
        auto_arrivals=auto_arrivals,
        scsp_versions_url=scsp_versions_url,
        scsp_token_a=scsp_token_a,
        faults=faults,
    )
    app = create_cpo_app(config)
    simulator = app.state.simulator
    print(f"simulated CPO {config.party}: versions {simulator.versions_url}")
    print(f"token A (give to the SCSP): {sorted(simulator.token_a)[0]}")
    uvicorn.run(fast_app(app), host=host, port=port, log_level=log_level)
