"""Configuration of one simulated CPO."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.ocpi.v2_2_1.transport import PartyRef
from sim.cpo.faults import FaultConfig


class CpoConfig(BaseModel):
    """Everything that shapes one simulated CPO; defaults give a small AC site."""

    model_config = ConfigDict(extra="forbid")

    party: str = Field(default="NL/CPA", description="CC/PID of the CPO")
    name: str = "Simulated CPO"
    base_url: str = Field(default="http://127.0.0.1:8801", description="public URL the CPO advertises")
    token_a: str | None = Field(default=None, description="registration token A; generated when absent")
    evses: int = Field(default=10, ge=1)
    evses_per_location: int = Field(default=10, ge=1)
    max_kw: float = Field(default=11.0, gt=0)
    power_type: Literal["AC_1_PHASE", "AC_3_PHASE", "DC"] = "AC_3_PHASE"
    v2g: bool = Field(default=False, description="EVSEs may discharge on negative limits")
    advertise_v2g_capability: bool = Field(default=True, description="list V2G_CAPABLE when v2g is on")
    charging_profile_capable: bool = True
    category: Literal["private", "public", "workplace"] = "public"
    auto_arrivals: bool = Field(default=True, description="cars arrive by the ElaadNL distributions")
    report_soc: Literal["never", "dc", "always"] = "dc"
    period_s: int = Field(default=300, ge=1, description="charging period length and PATCH cadence")
    fast_period_s: int | None = Field(
        default=None, ge=1, description="charging period and PATCH cadence inside fast_windows (aFRR telemetry)")
    fast_windows: list[tuple[datetime, datetime]] = Field(
        default_factory=list, description="[start, end) when the sessions' pool is under aFRR activation")
    physics_step_s: float = Field(default=60.0, gt=0)
    callback_delay_s: float = Field(default=2.0, ge=0, description="delay of async profile results")
    profile_timeout_s: int = Field(default=30, ge=0, description="timeout announced in sync answers")
    min_profile_interval_s: float = Field(default=0.0, ge=0, description="TOO_OFTEN below this interval")
    active_profile_horizon_s: int = Field(default=3600, ge=60)
    page_limit: int = Field(default=50, ge=1, description="X-Limit of list endpoints")
    tariff_eur_per_kwh: float = 0.35
    seed: int | None = None
    realtime: bool = Field(default=False, description="advance the fleet from a clock in the background")
    speed: float = Field(default=1.0, gt=0, description="simulated seconds per real second when realtime")
    tick_s: float = Field(default=1.0, gt=0)
    register_with_url: str | None = Field(default=None, description="SCSP versions URL to register with")
    register_with_token: str | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)
    fast_profiles: bool = Field(
        default=False,
        description="answer ChargingProfiles PUT in a lean ASGI path before FastAPI (same answers; benchmarks)",
    )
    push_concurrency: int = Field(
        default=1, ge=1,
        description="pushes in flight at once, each session's in order (Session PUT/PATCH, CDR, profile results)",
    )
    result_tick_s: float = Field(
        default=0.0, ge=0, description="without realtime: deliver due profile results this often (0 = off)"
    )

    @property
    def party_ref(self) -> PartyRef:
        """The CPO's party as a PartyRef."""
        return PartyRef.parse(self.party)
