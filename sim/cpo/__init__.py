"""A simulated OCPI 2.2.1 CPO with ElaadNL-driven EVs that obey charging profiles."""

from sim.cpo.app import create_cpo_app, get_simulator
from sim.cpo.clock import Clock, ManualClock, ScaledClock, SystemClock
from sim.cpo.config import CpoConfig
from sim.cpo.faults import FaultConfig
from sim.cpo.runner import run_cpo
from sim.cpo.simulator import CpoSimulator, SimError

__all__ = [
    "Clock",
    "CpoConfig",
    "CpoSimulator",
    "FaultConfig",
    "ManualClock",
    "ScaledClock",
    "SimError",
    "SystemClock",
    "create_cpo_app",
    "get_simulator",
    "run_cpo",
]
